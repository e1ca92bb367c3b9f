"""Building blocks shared by the generator and discriminators.

The Sequential index layout of each block matches the original AttnGAN so that
checkpoint conversion only renames module prefixes (see :mod:`attngan.hub.legacy`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def glu(x: torch.Tensor) -> torch.Tensor:
    """Gated linear unit over channels: ``[B, 2C, ...] -> [B, C, ...]``."""
    half = x.shape[1] // 2
    return x[:, :half] * torch.sigmoid(x[:, half:])


class GLU(nn.Module):
    """Module form of :func:`glu` (channel dimension 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] % 2:
            raise ValueError(f"GLU needs an even channel count, got {x.shape[1]}")
        return glu(x)


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap ``module`` with spectral normalisation when ``enabled``."""
    if enabled:
        return nn.utils.parametrizations.spectral_norm(module)
    return module


def conv3x3(in_channels: int, out_channels: int, spectral: bool = False) -> nn.Module:
    return maybe_spectral_norm(nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False), spectral)


def conv1x1(in_channels: int, out_channels: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=bias)


def up_block(in_channels: int, out_channels: int, spectral: bool = False) -> nn.Sequential:
    """Nearest x2 upsampling -> 3x3 conv -> BatchNorm -> GLU: ``[B, Cin, H, W] -> [B, Cout, 2H, 2W]``."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        conv3x3(in_channels, out_channels * 2, spectral),
        nn.BatchNorm2d(out_channels * 2),
        GLU(),
    )


class ResidualBlock(nn.Module):
    """``x + BN(conv(GLU(BN(conv(x)))))`` keeping ``[B, C, H, W]``."""

    def __init__(self, channels: int, spectral: bool = False) -> None:
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(channels, channels * 2, spectral),
            nn.BatchNorm2d(channels * 2),
            GLU(),
            conv3x3(channels, channels, spectral),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + x


class SelfAttention(nn.Module):
    """SAGAN self-attention over positions: ``[B, C, H, W] -> [B, C, H, W]``.

    The residual gate ``gamma`` starts at zero, so the block begins as the identity.

    Twin: :class:`~attngan.inference.fast.FastSelfAttention` (fused inference;
    ``tests/test_precision.py::test_fast_self_attention_matches_the_reference``).
    """

    def __init__(self, channels: int, spectral: bool = False) -> None:
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = maybe_spectral_norm(conv1x1(channels, inner), spectral)
        self.key = maybe_spectral_norm(conv1x1(channels, inner), spectral)
        self.value = maybe_spectral_norm(conv1x1(channels, channels), spectral)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # [B, N, C']
        k = self.key(x).flatten(2).transpose(1, 2)  # [B, N, C']
        v = self.value(x).flatten(2).transpose(1, 2)  # [B, N, C]
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # SAGAN uses no 1/sqrt(d)
        return x + self.gamma * out.transpose(1, 2).reshape(b, c, h, w)


class ConditionModulation(nn.Module):
    """Per-channel scale and shift from the condition (FiLM): ``x [B, K, H, W]``, ``c [B, C]`` ->
    ``x * (1 + scale(c)) + shift(c)``. Starts as the identity (zero weights, also after
    :func:`init_weights_original`)."""

    def __init__(self, condition_dim: int, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(condition_dim, channels * 2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        scale, shift = self.fc(condition).to(x.dtype)[:, :, None, None].chunk(2, dim=1)
        return torch.addcmul(x + shift, x, scale)


def init_weights_original(module: nn.Module) -> None:
    """The original's ``weights_init``: orthogonal conv/linear weights, BN ~ N(1, 0.02); a
    :class:`ConditionModulation` (not in the original) stays the identity.

    Apply with ``model.apply(init_weights_original)``; draws from torch's global RNG, so
    seed it (``torch.manual_seed``) first for reproducible runs.
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        weight = getattr(module, "parametrizations", None)
        target = weight.weight.original if weight is not None else module.weight
        nn.init.orthogonal_(target.data, 1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
        module.weight.data.normal_(1.0, 0.02)
        module.bias.data.zero_()
    elif isinstance(module, ConditionModulation):  # after its linear layer (apply visits children first)
        module.reset_parameters()
