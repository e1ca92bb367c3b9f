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

Parameters, state-dict keys, checkpoints and exported models are unchanged. Bound to the
modules they replace by ``tests/test_training_step.py``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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


def release_gradients_after_step(optimizer: torch.optim.Optimizer) -> None:
    """Set every gradient of ``optimizer``'s parameters to None right after each ``step()``."""

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        opt.zero_grad(set_to_none=True)

    optimizer.register_step_post_hook(hook)
