"""Inference-optimised generator: the same function as :class:`~attngan.models.generator.Generator`
in eval mode, computed with fewer FLOPs and fewer passes over memory.

What changes (all exact in real arithmetic; fp32 results match to rounding, ~1e-6):

* every BatchNorm (eval statistics) is folded into the convolution or linear layer before it;
* each up-block (nearest x2 upsampling -> 3x3 conv) becomes one 2x2 convolution on the
  low-resolution input with four output phases (sub-pixel convolution): 16 instead of 36
  multiply-adds per input channel and output pixel, and no upsampled tensor;
* GLU, tanh and the residual addition run inside the convolution as oneDNN post-ops on the
  CPU (``torch.ops.mkldnn._convolution_pointwise``); elsewhere as plain tensor ops;
* activations stay channels-last (NHWC), the layout oneDNN's convolutions prefer;
* word attention is computed directly in channels-last order.

Optionally the weights and activations are bfloat16 (``dtype=torch.bfloat16``), which pays
only on hardware with native bf16 arithmetic (the policy is in :mod:`attngan.precision`).

Each class here is a twin of a reference in :mod:`attngan.models`, bound to it by a parity test
(fp32 to 1e-5; bf16 by PSNR); each reference names its twins in its own docstring
(``tests/test_fast.py::test_every_twin_names_its_reference_and_an_existing_parity_test`` checks
this table):

======================================  =========================================================  ==================================================================
twin                                    reference                                                  parity test
======================================  =========================================================  ==================================================================
:class:`FastGenerator`                  :class:`~attngan.models.generator.Generator`               ``tests/test_fast.py::test_fast_generator_matches_*``
:func:`encode_text`                     :meth:`~attngan.models.text_encoder.TextEncoder.forward`   ``tests/test_fast.py::test_encode_text_without_packing_matches``
:func:`channels_last_word_attention`    :func:`~attngan.models.attention.word_attention`           ``tests/test_fast.py::test_channels_last_word_attention_matches``
:class:`FastSelfAttention`              :class:`~attngan.models.layers.SelfAttention`              ``tests/test_precision.py::test_fast_self_attention_matches_the_reference``
======================================  =========================================================  ==================================================================
"""

from __future__ import annotations

import copy
import logging
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ..models.attention import tile_mask_like_original
from ..models.generator import Generator, GeneratorOutput, ImageHead, InitialStage, RefineStage
from ..models.layers import ConditionModulation, ResidualBlock, SelfAttention
from ..models.rewrites import fold_batchnorm, subpixel_kernels
from ..models.text_encoder import TextEncoder
from ..precision import hardware_bf16

M = TypeVar("M", bound=nn.Module)


def _as(kind: type[M], module: nn.Module) -> M:
    """``module``, checked to be the kind of layer a fast twin folds."""
    if not isinstance(module, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(module).__name__}")
    return module

log = logging.getLogger(__name__)


def encode_text(text_encoder: TextEncoder, tokens: torch.Tensor,
                lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``text_encoder(tokens, lengths)`` without sequence packing when every caption has the same length
    (the twin of :meth:`TextEncoder.forward`; see the module's table).

    Args:
        tokens: ``[B, T]`` token ids, zero-padded.
        lengths: ``[B]`` real tokens per caption.
    Returns:
        ``(word_features [B, D, T], sentence [B, D])`` as :meth:`TextEncoder.forward`.
    """
    lengths_cpu = lengths.detach().to("cpu")
    n = int(lengths_cpu[0])
    if text_encoder.training or tokens.dim() != 2 or n < 1 or bool((lengths_cpu != n).any()):
        return text_encoder(tokens, lengths)
    cfg = text_encoder.config
    output, hidden = text_encoder.rnn(text_encoder.embedding(tokens[:, :n]))  # [B, n, D]
    if isinstance(hidden, tuple):  # LSTM: (h_n, c_n)
        hidden = hidden[0]
    batch = tokens.shape[0]
    last = hidden.view(cfg.num_layers, text_encoder.directions, batch, -1)[-1]  # [dirs, B, H]
    words = F.pad(output, (0, 0, 0, tokens.shape[1] - n)).transpose(1, 2)
    return words, last.transpose(0, 1).reshape(batch, -1)


def _mkldnn_ok(x: torch.Tensor) -> bool:
    if x.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and hardware_bf16("cpu"))


class FusedConv(nn.Module):
    """A convolution with a bias and an optional fused epilogue (oneDNN post-ops on the CPU).

    On the CPU the weight is reordered once per input shape into oneDNN's preferred layout
    and kept (at most ``MAX_PACKED`` shapes), which matters for the small early layers.
    """

    MAX_PACKED = 8
    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("weight", weight.to(dtype).contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", bias.to(dtype).contiguous())
        self.padding = padding
        self._packed: dict[tuple[int, ...], torch.Tensor] = {}

    def _apply(self, fn, recurse=True):  # as torch.nn.Module._apply, which is untyped
        self._packed = {}  # device or dtype changes invalidate the reordered weights
        return super()._apply(fn, recurse)

    def packed_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The weight in oneDNN's layout for inputs shaped like ``x`` ``[B, C, H, W]``."""
        key = tuple(x.shape)
        packed = self._packed.get(key)
        if packed is None:
            if len(self._packed) >= self.MAX_PACKED:
                self._packed.clear()
            pad = [self.padding] * 2
            packed = torch.ops.mkldnn._reorder_convolution_weight(self.weight, pad, [1, 1], [1, 1], 1, list(key))
            self._packed[key] = packed
        return packed

    def forward(self, x: torch.Tensor, unary: str = "none", other: torch.Tensor | None = None,
                binary: str = "add") -> torch.Tensor:
        """``[B, C, H, W]`` -> ``unary(conv(x))`` or ``conv(x) <binary> other`` (``add``/``mul``)."""
        pad = [self.padding] * 2
        if _mkldnn_ok(x):
            weight = self.packed_weight(x)
            if other is None:
                return torch.ops.mkldnn._convolution_pointwise(x, weight, self.bias, pad, [1, 1], [1, 1], 1,
                                                               unary, [], "")
            return torch.ops.mkldnn._convolution_pointwise.binary(x, other, weight, self.bias, pad, [1, 1],
                                                                  [1, 1], 1, binary, None, None, [], None)
        y = F.conv2d(x, self.weight, self.bias, padding=self.padding)
        if other is not None:
            return y + other if binary == "add" else y * other
        return {"none": y, "sigmoid": torch.sigmoid(y), "tanh": torch.tanh(y)}[unary] if unary != "none" else y


class GatedConv(nn.Module):
    """``GLU(BN(conv(x)))`` as two convolutions: ``value(x) * sigmoid(gate(x))``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: int, dtype: torch.dtype) -> None:
        super().__init__()
        half = weight.shape[0] // 2
        self.value = FusedConv(weight[:half], bias[:half], padding, dtype)
        self.gate = FusedConv(weight[half:], bias[half:], padding, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, O / 2, H', W']``."""
        return self.value(x, other=self.gate(x, "sigmoid"), binary="mul")


class FastUpBlock(nn.Module):
    """``up_block`` (upsample x2 -> conv3x3 -> BN -> GLU) as a gated four-phase 2x2 convolution
    (``subpixel=False``: upsampling, then the gated, folded 3x3 convolution; for comparison)."""

    def __init__(self, block: nn.Module, dtype: torch.dtype, subpixel: bool = True) -> None:
        super().__init__()
        block = _as(nn.Sequential, block)
        conv, bn = block[1], _as(nn.BatchNorm2d, block[2])
        weight, bias = fold_batchnorm(_conv_weight(conv), None, bn)
        self.subpixel = subpixel
        if not subpixel:
            self.conv = GatedConv(weight, bias, 1, dtype)
            return
        phases = subpixel_kernels(weight)  # [4, 2 * O, C, 2, 2]
        half = phases.shape[1] // 2
        value = phases[:, :half].reshape(-1, *phases.shape[2:])
        gate = phases[:, half:].reshape(-1, *phases.shape[2:])
        self.out_channels = half
        self.conv = GatedConv(torch.cat([value, gate]), torch.cat([bias[:half].repeat(4), bias[half:].repeat(4)]),
                              1, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, O, 2H, 2W]`` (channels-last)."""
        if not self.subpixel:
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        b, _, h, w = x.shape
        y = self.conv(x)  # [B, 4 * O, H + 1, W + 1]: phase-major channels
        o = self.out_channels
        out = torch.empty(b, h, 2, w, 2, o, dtype=y.dtype, device=y.device)
        for a in (0, 1):
            for c in (0, 1):
                phase = y[:, (2 * a + c) * o:(2 * a + c + 1) * o, a:a + h, c:c + w]  # [B, O, H, W]
                out[:, :, a, :, c, :].copy_(phase.permute(0, 2, 3, 1))
        return out.view(b, 2 * h, 2 * w, o).permute(0, 3, 1, 2)


class FastResidualBlock(nn.Module):
    """``x + BN(conv(GLU(BN(conv(x)))))`` with folded BatchNorms and fused GLU and addition."""

    def __init__(self, block: ResidualBlock, dtype: torch.dtype) -> None:
        super().__init__()
        conv1, bn1, _, conv2, bn2 = block.block
        self.gated = GatedConv(*fold_batchnorm(_conv_weight(conv1), None, _as(nn.BatchNorm2d, bn1)), 1, dtype)
        self.conv = FusedConv(*fold_batchnorm(_conv_weight(conv2), None, _as(nn.BatchNorm2d, bn2)), 1, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, C, H, W]``."""
        return self.conv(self.gated(x), other=x, binary="add")


def _conv_weight(conv: nn.Module) -> torch.Tensor:
    """The effective weight of a conv (spectral norm's parametrisation included)."""
    weight = conv.weight
    assert isinstance(weight, torch.Tensor)
    with torch.no_grad():
        return weight.detach()


def _glu(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[1] // 2
    return x[:, :half] * torch.sigmoid(x[:, half:])


class FastSelfAttention(nn.Module):
    """:class:`~attngan.models.layers.SelfAttention` in ``dtype`` on channels-last features, its
    1x1 projections (spectral norm baked in) as matrix products. Bound to it by
    ``tests/test_precision.py::test_fast_self_attention_matches_the_reference``."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    gamma: torch.Tensor

    def __init__(self, attention: SelfAttention, dtype: torch.dtype) -> None:
        super().__init__()

        def matrix(conv: nn.Module) -> torch.Tensor:  # [C_out, C_in, 1, 1] -> [C_in, C_out]
            return _conv_weight(conv)[:, :, 0, 0].t().to(dtype).contiguous()

        self.register_buffer("query", matrix(attention.query))
        self.register_buffer("key", matrix(attention.key))
        self.register_buffer("value", matrix(attention.value))
        self.register_buffer("gamma", attention.gamma.detach().to(dtype).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, C, H, W]`` (channels-last in, channels-last out)."""
        b, c, h, w = x.shape
        flat = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # [B, N, C]; a view for channels-last input
        out = F.scaled_dot_product_attention(flat @ self.query, flat @ self.key, flat @ self.value, scale=1.0)
        return (flat + self.gamma * out).view(b, h, w, c).permute(0, 3, 1, 2)


class FastInitialStage(nn.Module):
    """First stage: folded fc + GLU to a 4x4 map, then fast up-blocks (self-attention kept)."""

    def __init__(self, stage: InitialStage, dtype: torch.dtype, subpixel: bool = True) -> None:
        super().__init__()
        linear, bn = _as(nn.Linear, stage.fc[0]), _as(nn.BatchNorm1d, stage.fc[1])
        weight, bias = fold_batchnorm(linear.weight, linear.bias, bn)
        self.fc = nn.Linear(weight.shape[1], weight.shape[0]).to(dtype)
        self.fc.weight.data.copy_(weight)
        self.fc.bias.data.copy_(bias)
        self.start_channels = stage.start_channels
        self.upsample = nn.Sequential(*[FastUpBlock(block, dtype, subpixel) for block in stage.upsample])
        self.modulation = None  # the condition's scale and shift after each up-block: one matrix product
        if stage.modulation is not None:
            fcs = [_as(ConditionModulation, m).fc for m in stage.modulation]
            self.split = [fc.out_features // 2 for fc in fcs]
            self.modulation = nn.Linear(fcs[0].in_features, sum(fc.out_features for fc in fcs)).to(dtype)
            self.modulation.weight.data.copy_(torch.cat([fc.weight.detach() for fc in fcs]))
            self.modulation.bias.data.copy_(torch.cat([fc.bias.detach() for fc in fcs]))
        self.self_attention = FastSelfAttention(stage.self_attention, dtype) if stage.self_attention else None

    def forward(self, noise: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``[B, Z]``, ``[B, C]`` -> ``[B, channels, size, size]`` (channels-last)."""
        x = _glu(self.fc(torch.cat((condition, noise), dim=1)))
        x = x.view(x.shape[0], self.start_channels, 4, 4).contiguous(memory_format=torch.channels_last)
        if self.modulation is None:
            x = self.upsample(x)
        else:
            films = self.modulation(condition).split([2 * k for k in self.split], dim=1)
            for block, film in zip(self.upsample, films):
                scale, shift = film[:, :, None, None].chunk(2, dim=1)
                x = block(x)
                x = torch.addcmul(x + shift, x, scale)
        if self.self_attention is not None:
            x = self.self_attention(x)
        return x


def channels_last_word_attention(features: torch.Tensor, words: torch.Tensor, mask: torch.Tensor | None,
                                 legacy_mask_tiling: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~attngan.models.attention.word_attention` with a channels-last context.

    Args:
        features: ``[B, C, H, W]`` (channels-last) queries.
        words: ``[B, C, T]`` projected words.
        mask: ``[B, T]`` bool, True at padding, or None.
    Returns:
        ``(context [B, C, H, W] channels-last, attention [B, T, H, W])``.
    """
    b, c, h, w = features.shape
    queries = features.permute(0, 2, 3, 1).reshape(b, h * w, c)  # [B, HW, C]
    scores = torch.bmm(queries, words)  # [B, HW, T]
    if mask is not None:
        full = tile_mask_like_original(mask, h * w) if legacy_mask_tiling else mask[:, None, :].expand_as(scores)
        scores = scores.masked_fill(full, float("-inf"))
    attention = torch.softmax(scores.float(), dim=-1).to(scores.dtype)  # [B, HW, T]
    context = torch.bmm(attention, words.transpose(1, 2))  # [B, HW, C]
    context = context.view(b, h, w, c).permute(0, 3, 1, 2)
    return context, attention.transpose(1, 2).reshape(b, -1, h, w)


class FastRefineStage(nn.Module):
    """Word attention, fused residual blocks and a fast up-block."""

    def __init__(self, stage: RefineStage, dtype: torch.dtype, subpixel: bool = True) -> None:
        super().__init__()
        self.project_words = nn.Parameter(stage.attention.project_words.weight.detach()[:, :, 0, 0].to(dtype),
                                          requires_grad=False)  # [C, D]
        self.residual = nn.Sequential(*[FastResidualBlock(_as(ResidualBlock, block), dtype) for block in stage.residual])
        self.upsample = FastUpBlock(stage.upsample, dtype, subpixel)

    def forward(self, features: torch.Tensor, words: torch.Tensor, mask: torch.Tensor | None,
                legacy_mask_tiling: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, H, W]``, ``[B, D, T]`` -> ``([B, C, 2H, 2W], attention [B, T, H, W])``."""
        projected = torch.matmul(self.project_words, words)  # [B, C, T]
        context, attention = channels_last_word_attention(features, projected, mask, legacy_mask_tiling)
        x = self.residual(torch.cat((features, context), dim=1))
        return self.upsample(x), attention


class FastImageHead(nn.Module):
    """``tanh(conv3x3(x))`` with the tanh fused; the 3 outputs are padded to 4 (oneDNN runs a
    4-channel convolution about twice as fast as a 3-channel one)."""

    def __init__(self, conv: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        weight = _conv_weight(conv).double()
        self.out_channels = weight.shape[0]
        padded = torch.zeros(-(-weight.shape[0] // 4) * 4, *weight.shape[1:], dtype=torch.float64)
        padded[:self.out_channels] = weight
        self.conv = FusedConv(padded, torch.zeros(padded.shape[0], dtype=torch.float64), 1, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, 3, H, W]`` in [-1, 1]."""
        return self.conv(x, "tanh")[:, :self.out_channels]


class FastGenerator(nn.Module):
    """Eval-only copy of a :class:`Generator` (same call signature and outputs).

    The weights are copied at construction: rebuild it after the source model changes.
    Images and attention maps come back as contiguous float32 NCHW tensors.
    """

    def __init__(self, generator: Generator, dtype: torch.dtype = torch.float32, subpixel: bool = True) -> None:
        super().__init__()
        if generator.training:
            raise ValueError("FastGenerator folds BatchNorm statistics: put the generator in eval mode first")
        device = next(generator.parameters()).device
        source = copy.deepcopy(generator).cpu().float()
        self.config = generator.config
        self.dtype = dtype
        self.conditioning = _FrozenConditioning(source.conditioning)
        self.initial = FastInitialStage(source.initial, dtype, subpixel)
        self.refine = nn.ModuleList([FastRefineStage(_as(RefineStage, stage), dtype, subpixel) for stage in source.refine])
        self.to_image = nn.ModuleList([FastImageHead(_as(ImageHead, head).conv, dtype) for head in source.to_image])
        self.to(device)
        self.eval().requires_grad_(False)

    def forward(self, noise: torch.Tensor, sentence: torch.Tensor, words: torch.Tensor,
                mask: torch.Tensor | None = None, eps: torch.Tensor | None = None,
                generator: torch.Generator | None = None, num_stages: int | None = None) -> GeneratorOutput:
        """As :meth:`Generator.forward`: ``[B, Z]``, ``[B, D]``, ``[B, D, T]``, ``[B, T]``, ``[B, C]``."""
        cfg = self.config
        stages = cfg.num_stages if num_stages is None else num_stages
        if not 1 <= stages <= cfg.num_stages:
            raise ValueError(f"num_stages must be in 1..{cfg.num_stages}, got {stages}")
        condition, mu, logvar = self.conditioning(sentence.float(), eps, generator)
        dt = self.dtype
        h = self.initial(noise.to(dt), condition.to(dt))
        words = words.to(dt)
        images: list[torch.Tensor] = []
        maps: list[torch.Tensor] = []
        dcgan = cfg.variant == "dcgan"
        if not dcgan:
            images.append(self.to_image[0](h))
        for i in range(stages - 1):
            h, att = self.refine[i](h, words, mask, cfg.legacy_mask_tiling)
            maps.append(att.float())
            if not dcgan:
                images.append(self.to_image[i + 1](h))
        if dcgan:
            images.append(self.to_image[0](h))
        images = [img.float().contiguous() for img in images]
        return GeneratorOutput(images, maps, mu, logvar, condition)


class _FrozenConditioning(nn.Module):
    """The conditioning augmentation, in float32 (it is tiny; its output seeds everything)."""

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self.inner = source.float().eval()

    def forward(self, sentence: torch.Tensor, eps: torch.Tensor | None,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.inner(sentence, eps, generator)
