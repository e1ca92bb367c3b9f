"""AttnGAN generator: conditioning augmentation, first stage, attentional refinement stages."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from ..config import GeneratorConfig
from .attention import WordAttention
from .layers import GLU, ConditionModulation, ResidualBlock, SelfAttention, conv3x3, glu, up_block


class ConditioningAugmentation(nn.Module):
    """Sentence feature ``[B, D]`` -> condition ``c = mu + noise_scale * eps * exp(logvar / 2)`` ``[B, C]``."""

    def __init__(self, text_dim: int, condition_dim: int, noise_scale: float = 1.0) -> None:
        super().__init__()
        self.condition_dim = condition_dim
        self.noise_scale = noise_scale
        self.fc = nn.Linear(text_dim, condition_dim * 4)

    def encode(self, sentence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, D]`` -> ``(mu [B, C], logvar [B, C])``."""
        x = glu(self.fc(sentence))
        return x[:, : self.condition_dim], x[:, self.condition_dim :]

    def forward(
        self,
        sentence: torch.Tensor,
        eps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(c_code, mu, logvar)``, each ``[B, C]``.

        ``eps`` is the standard-normal noise; if None it is drawn with ``generator``.
        """
        mu, logvar = self.encode(sentence)
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + (eps * self.noise_scale) * torch.exp(0.5 * logvar), mu, logvar  # x * 1.0 is exact


class InitialStage(nn.Module):
    """``[B, Z + C]`` -> features ``[B, channels, size, size]`` via a 4x4 map and x2 upsamplings
    (each followed by a :class:`ConditionModulation` when ``condition_dim`` is given)."""

    def __init__(self, in_dim: int, channels: int, size: int, self_attention: bool, spectral: bool,
                 condition_dim: int | None = None) -> None:
        super().__init__()
        num_up = int(math.log2(size // 4))
        self.start_channels = channels * 2**num_up
        self.fc = nn.Sequential(
            nn.Linear(in_dim, self.start_channels * 16 * 2, bias=False),
            nn.BatchNorm1d(self.start_channels * 16 * 2),
            GLU(),
        )
        self.upsample = nn.Sequential(
            *[up_block(self.start_channels >> i, self.start_channels >> (i + 1), spectral) for i in range(num_up)]
        )
        self.modulation = None if condition_dim is None else nn.ModuleList(
            [ConditionModulation(condition_dim, self.start_channels >> (i + 1)) for i in range(num_up)])
        self.self_attention = SelfAttention(channels, spectral) if self_attention else None

    def forward(self, noise: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = self.fc(torch.cat((condition, noise), dim=1))
        x = x.view(x.shape[0], self.start_channels, 4, 4)
        if self.modulation is None:
            x = self.upsample(x)
        else:
            for block, modulation in zip(self.upsample, self.modulation):
                x = modulation(block(x), condition)
        if self.self_attention is not None:
            x = self.self_attention(x)
        return x


class RefineStage(nn.Module):
    """Word attention, residual blocks and x2 upsampling: ``[B, C, H, W]`` -> ``[B, C, 2H, 2W]``."""

    def __init__(self, channels: int, text_dim: int, num_residual: int, spectral: bool) -> None:
        super().__init__()
        self.attention = WordAttention(channels, text_dim)
        self.residual = nn.Sequential(*[ResidualBlock(channels * 2, spectral) for _ in range(num_residual)])
        self.upsample = up_block(channels * 2, channels, spectral)

    def forward(
        self, features: torch.Tensor, words: torch.Tensor, mask: torch.Tensor | None, legacy_mask_tiling: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(next features [B, C, 2H, 2W], attention [B, T, H, W])``."""
        context, attention = self.attention(features, words, mask, legacy_mask_tiling)
        x = self.residual(torch.cat((features, context), dim=1))
        return self.upsample(x), attention


class ImageHead(nn.Module):
    """3x3 conv to RGB and tanh: ``[B, C, H, W]`` -> ``[B, 3, H, W]`` in [-1, 1]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))


class GeneratorOutput(NamedTuple):
    images: list[torch.Tensor]  # per stage [B, 3, S_i, S_i] (one entry for the DCGAN variant)
    attention_maps: list[torch.Tensor]  # per refinement stage [B, T, H_i, W_i]
    mu: torch.Tensor  # [B, C]
    logvar: torch.Tensor  # [B, C]
    condition: torch.Tensor  # [B, C]


class Generator(nn.Module):
    """The AttnGAN generator (``G_NET``), or its single-image DCGAN variant (``G_DCGAN``).

    The reference computation. Twins compute the same function otherwise, each bound to this
    class by a parity test: :class:`~attngan.inference.fast.FastGenerator` (fused inference,
    ``tests/test_fast.py::test_fast_generator_matches_*``) and
    :class:`~attngan.inference.onnx.ExportableGenerator` (ONNX export,
    ``tests/test_onnx.py::test_onnx_pipeline_matches_torch``); in training its up-blocks run as
    :class:`~attngan.training.fast_layers.SubpixelUpConv` (``tests/test_training_step.py``).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.conditioning = ConditioningAugmentation(config.text_dim, config.condition_dim, config.condition_noise)
        self.initial = InitialStage(config.noise_dim + config.condition_dim, c, config.first_stage_size,
                                    config.self_attention, config.spectral_norm,
                                    config.condition_dim if config.condition_modulation else None)
        self.refine = nn.ModuleList(
            [RefineStage(c, config.text_dim, config.num_residual, config.spectral_norm)
             for _ in range(config.num_stages - 1)]
        )
        heads = 1 if config.variant == "dcgan" else config.num_stages
        self.to_image = nn.ModuleList([ImageHead(c) for _ in range(heads)])

    def forward(
        self,
        noise: torch.Tensor,
        sentence: torch.Tensor,
        words: torch.Tensor,
        mask: torch.Tensor | None = None,
        eps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_stages: int | None = None,
    ) -> GeneratorOutput:
        """Generate images.

        Args:
            noise: ``[B, Z]`` latent z.
            sentence: ``[B, D]`` sentence features.
            words: ``[B, D, T]`` word features.
            mask: ``[B, T]`` bool, True at padded words (or None: attend to all T).
            eps: ``[B, C]`` conditioning-augmentation noise, drawn with ``generator`` if None.
            num_stages: stop after this many stages (default: all).
        """
        stages = self.config.num_stages if num_stages is None else num_stages
        if not 1 <= stages <= self.config.num_stages:
            raise ValueError(f"num_stages must be in 1..{self.config.num_stages}, got {stages}")
        condition, mu, logvar = self.conditioning(sentence, eps, generator)
        h = self.initial(noise, condition)
        images: list[torch.Tensor] = []
        maps: list[torch.Tensor] = []
        dcgan = self.config.variant == "dcgan"
        if not dcgan:
            images.append(self.to_image[0](h))
        for i in range(stages - 1):
            h, att = self.refine[i](h, words, mask, self.config.legacy_mask_tiling)
            maps.append(att)
            if not dcgan:
                images.append(self.to_image[i + 1](h))
        if dcgan:
            images.append(self.to_image[0](h))
        return GeneratorOutput(images, maps, mu, logvar, condition)
