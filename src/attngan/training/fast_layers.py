"""Training-time rewrites of the modules, each the same function as the module it replaces
(:class:`~attngan.training.gan.GANTrainer` uses them all):

* The generator's up-blocks (nearest x2 upsampling -> 3x3 conv) run as four-phase 2x2
  convolutions on the low-resolution input (:func:`attngan.models.rewrites.subpixel_kernels`, computed
  from the 3x3 weight on every call, so gradients and the optimiser see the same parameter):
  2.25x fewer multiply-adds forward and backward, and no upsampled tensor is stored.
* The frozen DAMSM image encoder (eval mode, no weight gradients) has its BatchNorms folded
  into the convolutions and runs channels-last; gradients still flow to the fake images.
* Gradients are released right after each optimiser step (every step starts with
  ``zero_grad(set_to_none=True)`` anyway), so the discriminators' gradients are not held
  through the generator step: lower peak memory, same updates.
* The discriminators can be updated during their backward pass, each weight as soon as its gradient
  is complete (:func:`update_in_backward`), so that their gradients are never all held at once.
* The discriminators' logit layers (a 4x4 convolution over the whole 4x4 feature map) run as one
  matrix product (:func:`use_matmul_logits`): oneDNN's convolution is several times slower for
  that shape, forward and backward.
* The generator's last stage (the largest images) can be recomputed in the backward pass instead
  of holding its activations through the discriminators' update (:func:`checkpoint_last_stage`);
  BatchNorm running statistics are restored after the recomputation, so they advance once a step.

Parameters, state-dict keys, checkpoints and exported models are unchanged. Bound to the
modules they replace by ``tests/test_training_step.py``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..models.discriminator import DiscriminatorHead
from ..models.rewrites import fold_batchnorm, subpixel_kernels


class SubpixelUpConv(nn.Conv2d):
    """A 3x3 conv (padding 1) applied to the nearest x2 upsampling of its input, computed on
    the input itself: ``[B, C, H, W]`` -> ``[B, O, 2H, 2W]``. Same parameters as the conv."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> SubpixelUpConv:
        if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
            raise ValueError("SubpixelUpConv replaces a 3x3, stride 1, padding 1 convolution")
        new = cls(conv.in_channels, conv.out_channels, 3, padding=1, bias=conv.bias is not None,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        new.weight = conv.weight  # the same Parameter: optimisers and EMA see no change
        if conv.bias is not None:
            new.bias = conv.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        o = self.out_channels
        kernels = subpixel_kernels(self.weight).reshape(4 * o, c, 2, 2)  # [4O, C, 2, 2]
        bias = self.bias.repeat(4) if self.bias is not None else None
        y = F.conv2d(x, kernels, bias, padding=1)  # [B, 4O, H + 1, W + 1], phase-major channels
        phases = [y[:, (2 * a + d) * o:(2 * a + d + 1) * o, a:a + h, d:d + w] for a in (0, 1) for d in (0, 1)]
        out = torch.stack(phases, dim=-1).view(b, o, h, w, 2, 2)  # [..., a, d]
        return out.permute(0, 1, 2, 4, 3, 5).reshape(b, o, 2 * h, 2 * w)


def use_subpixel_up_blocks(generator: nn.Module) -> int:
    """Replace every ``Upsample(x2, nearest) -> Conv2d 3x3`` pair in ``generator`` in place;
    returns how many were replaced. State-dict keys are unchanged."""
    count = 0
    for module in generator.modules():
        if not isinstance(module, nn.Sequential) or len(module) < 2:
            continue
        up, conv = module[0], module[1]
        if (isinstance(up, nn.Upsample) and up.mode == "nearest" and up.scale_factor in (2, 2.0)
                and type(conv) is nn.Conv2d and conv.kernel_size == (3, 3)):
            module[0] = nn.Identity()
            module[1] = SubpixelUpConv.from_conv(conv)
            count += 1
    return count


def fold_frozen_batchnorms(module: nn.Module) -> nn.Module:
    """A copy of an eval-mode, frozen network with every BatchNorm that follows a convolution
    folded into it (torchvision's ``BasicConv2d`` and ``Sequential(conv, bn, ...)``), channels-last.
    Same function of the input; no parameter requires a gradient."""
    out = copy.deepcopy(module).eval()
    for parent in list(out.modules()):
        pairs: list[tuple[str, str]] = []
        if isinstance(getattr(parent, "conv", None), nn.Conv2d) and isinstance(getattr(parent, "bn", None),
                                                                                nn.BatchNorm2d):
            pairs.append(("conv", "bn"))
        if isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            pairs += [(a, b) for a, b in zip(names, names[1:])
                      if type(parent._modules[a]) is nn.Conv2d and isinstance(parent._modules[b], nn.BatchNorm2d)]
        for conv_name, bn_name in pairs:
            conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
            weight, bias = fold_batchnorm(conv.weight, conv.bias, bn)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                               conv.dilation, conv.groups, bias=True)
            assert folded.bias is not None  # bias=True
            folded.weight.data.copy_(weight)
            folded.bias.data.copy_(bias)
            setattr(parent, conv_name, folded)
            setattr(parent, bn_name, nn.Identity())
    out.requires_grad_(False)
    return out.to(memory_format=torch.channels_last)


class ChannelsLastInput(nn.Module):
    """Runs ``inner`` on a channels-last copy of its image input ``[B, 3, H, W]``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = getattr(inner, "config", None)

    def forward(self, images: torch.Tensor) -> Any:
        return self.inner(images.contiguous(memory_format=torch.channels_last))


def update_in_backward(optimizer: torch.optim.Optimizer) -> None:
    """Make every backward pass update each of ``optimizer``'s parameters as soon as its gradient is
    accumulated: ``optimizer.step()`` runs for that parameter alone (its step hooks too, so that
    :func:`release_gradients_after_step` frees the gradient at once). Call no ``step()`` after such a
    backward pass. For optimisers that update each parameter on its own (Adam): the same updates."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.register_post_accumulate_grad_hook(functools.partial(_step_one, optimizer))


def _step_one(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> None:
    """``optimizer.step()`` for ``param`` alone (the groups are looked up on every call: loading a
    state dict replaces them)."""
    kept = [g["params"] for g in optimizer.param_groups]
    for g, params in zip(optimizer.param_groups, kept, strict=True):
        g["params"] = [param] if any(p is param for p in params) else []
    try:
        optimizer.step()
    finally:
        for g, params in zip(optimizer.param_groups, kept, strict=True):
            g["params"] = params


def release_gradients_after_step(optimizer: torch.optim.Optimizer) -> None:
    """Set every gradient of ``optimizer``'s parameters to None right after each ``step()``."""

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        opt.zero_grad(set_to_none=True)

    optimizer.register_step_post_hook(hook)


@contextlib.contextmanager
def batchnorm_statistics_kept(module: nn.Module) -> Iterator[None]:
    """Restore the running statistics of every BatchNorm in ``module`` on leaving the block (a
    recomputation in the backward pass must not count the batch twice)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    kept = [{name: buffer.clone() for name, buffer in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, kept, strict=True):
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)


def _mix_in(module: nn.Module, mixin: type[nn.Module]) -> None:
    """Give ``module`` the methods of ``mixin`` in place (its class becomes a subclass of both; same
    parameters, buffers, parametrizations and state-dict keys)."""
    if not isinstance(module, mixin):
        module.__class__ = _mixed_class(mixin, type(module))


_MIXED: dict[tuple[type[nn.Module], type[nn.Module]], type[nn.Module]] = {}


def _mixed_class(mixin: type[nn.Module], base: type[nn.Module]) -> type[nn.Module]:
    """One class per (mixin, base) pair, made on first use."""
    key = (mixin, base)
    if key not in _MIXED:
        _MIXED[key] = type(f"{mixin.__name__.lstrip('_')}{base.__name__}", (mixin, base), {})
    return _MIXED[key]


class _WholeMapConv(nn.Conv2d):
    """Mixin for a convolution that may cover its whole input (``[B, C, k, k]`` with a ``k x k``
    kernel, no padding): then one matrix product ``[B, C k k] x [C k k, O]`` -> ``[B, O, 1, 1]``."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,  # noqa: A002 (torch's name)
                      bias: torch.Tensor | None) -> torch.Tensor:
        if (input.shape[-2:] == weight.shape[-2:] and self.padding == (0, 0) and self.groups == 1
                and self.dilation == (1, 1) and self.padding_mode == "zeros"):
            out = F.linear(input.flatten(1), weight.flatten(1), bias)
            return out.view(*out.shape, 1, 1)
        return super()._conv_forward(input, weight, bias)


def use_matmul_logits(discriminators: nn.Module) -> int:
    """Run the logit convolution of every discriminator head in ``discriminators`` as a matrix
    product where it covers the whole feature map (in place); returns how many were changed."""
    count = 0
    for head in discriminators.modules():
        if isinstance(head, DiscriminatorHead):
            for layer in head.logits:
                if isinstance(layer, nn.Conv2d):
                    _mix_in(layer, _WholeMapConv)
                    count += 1
    return count


class _Recomputed(nn.Module):
    """Mixin: the forward runs under :func:`torch.utils.checkpoint.checkpoint` when gradients are
    on (its activations are recomputed in the backward pass instead of being stored)."""

    def forward(self, *args: Any) -> Any:
        if not torch.is_grad_enabled():
            return super().forward(*args)
        if torch.compiler.is_compiling():  # compiled: buffer updates are applied once, in the forward
            return checkpoint(super().forward, *args, use_reentrant=False)

        def contexts() -> tuple[contextlib.AbstractContextManager[None], contextlib.AbstractContextManager[None]]:
            return contextlib.nullcontext(), batchnorm_statistics_kept(self)

        return checkpoint(super().forward, *args, use_reentrant=False, context_fn=contexts)


def checkpoint_last_stage(generator: nn.Module) -> bool:
    """Recompute the last refinement stage of ``generator`` and its image head in the backward
    pass (in place: same parameters, same state-dict keys). False when it has no refinement stage."""
    refine, heads = getattr(generator, "refine", None), getattr(generator, "to_image", None)
    if not refine or heads is None:
        return False
    _mix_in(refine[-1], _Recomputed)
    _mix_in(heads[-1], _Recomputed)
    return True
