"""Exact rewrites of layers as other layers: pure tensor functions shared by the fused inference
path (:mod:`attngan.inference.fast`) and the training step (:mod:`attngan.training.fast_layers`).

* :func:`fold_batchnorm`: an eval-mode BatchNorm folded into the convolution or linear layer before it.
* :func:`subpixel_kernels`: nearest x2 upsampling followed by a 3x3 convolution, as four 2x2
  convolutions on the low-resolution input (16 instead of 36 multiply-adds per input channel
  and output pixel, and no upsampled tensor).

Both are exact in real arithmetic; ``tests/test_fast.py`` binds them to the layers they replace.
"""

from __future__ import annotations

import torch
from torch import nn

# How the three taps of a 3x3 kernel (rows or columns) act on the low-resolution input for
# output phase 0 (even rows) and phase 1 (odd rows) of a nearest x2 upsampling: [phase, tap2, tap3].
_PHASE_TAPS = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],
                            [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)



def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None,
                   bn: nn.BatchNorm1d | nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the layer before it.

    Args:
        weight: ``[O, ...]`` conv (``[O, C, k, k]``) or linear (``[O, C]``) weight.
        bias: ``[O]`` or None.
        bn: the BatchNorm over the ``O`` outputs (its running statistics are used).
    Returns:
        ``(weight [O, ...], bias [O])`` such that ``layer'(x) == bn(layer(x))``, in float64
        for the caller to cast (the fold is then exact to fp32 rounding).
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    w = weight.detach().double()
    b = bias.detach().double() if bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    scale = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -bn.running_mean.detach().double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return w * scale.view(-1, *([1] * (w.dim() - 1))), b * scale + shift


def subpixel_kernels(weight: torch.Tensor) -> torch.Tensor:
    """Rewrite nearest x2 upsampling + 3x3 conv (padding 1) as a 2x2 conv with four phases.

    Args:
        weight: ``[O, C, 3, 3]`` (the result has its dtype).
    Returns:
        ``[4, O, C, 2, 2]``, phase ``2a + b`` giving output pixels ``(2i + a, 2j + b)``; run as
        ``conv2d(x, k, padding=1)`` on the ``[B, C, H, W]`` input, phase ``(a, b)`` of output
        ``(i, j)`` is at position ``(i + a, j + b)`` of the ``[H + 1, W + 1]`` result.
    """
    taps = _PHASE_TAPS.to(device=weight.device, dtype=weight.dtype)
    k = torch.einsum("aik,bjl,ockl->abocij", taps, taps, weight)  # differentiable in ``weight``
    return k.reshape(4, *k.shape[2:])
