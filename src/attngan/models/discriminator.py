"""Per-resolution discriminators (``D_NET64/128/256``) with conditional and unconditional heads.

Heads return raw logits (the original applies a sigmoid inside the module and uses
``BCELoss``; ``sigmoid(logits)`` gives its outputs, and the losses use the equivalent,
numerically safer ``binary_cross_entropy_with_logits``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import DiscriminatorConfig
from .layers import SelfAttention, maybe_spectral_norm


def _conv(cin: int, cout: int, k: int, s: int, p: int, spectral: bool, bias: bool = False) -> nn.Module:
    return maybe_spectral_norm(nn.Conv2d(cin, cout, k, s, p, bias=bias), spectral)


def _norm(channels: int, batchnorm: bool) -> nn.Module:
    """BatchNorm, or an identity in its place (the layer indices, hence the state-dict keys, stay)."""
    return nn.BatchNorm2d(channels) if batchnorm else nn.Identity()


def conv3x3_leaky(cin: int, cout: int, spectral: bool = False, batchnorm: bool = True) -> nn.Sequential:
    """3x3 conv -> BatchNorm -> LeakyReLU(0.2) (the original ``Block3x3_leakRelu``)."""
    return nn.Sequential(_conv(cin, cout, 3, 1, 1, spectral), _norm(cout, batchnorm), nn.LeakyReLU(0.2, inplace=True))


def down_block(cin: int, cout: int, spectral: bool = False, batchnorm: bool = True) -> nn.Sequential:
    """4x4 stride-2 conv -> BatchNorm -> LeakyReLU(0.2): halves the resolution."""
    return nn.Sequential(_conv(cin, cout, 4, 2, 1, spectral), _norm(cout, batchnorm), nn.LeakyReLU(0.2, inplace=True))


def encode_to_4x4(image_size: int, channels: int, spectral: bool, batchnorm: bool = True) -> nn.Sequential:
    """Stride-2 convs from ``[B, 3, S, S]`` down to 4x4 (at most four, as ``encode_image_by_16times``)."""
    steps = min(int(math.log2(image_size // 4)), 4)
    layers: list[nn.Module] = [_conv(3, channels, 4, 2, 1, spectral), nn.LeakyReLU(0.2, inplace=True)]
    for i in range(1, steps):
        cin, cout = channels * 2 ** (i - 1), channels * 2**i
        layers += [_conv(cin, cout, 4, 2, 1, spectral), _norm(cout, batchnorm), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


class DiscriminatorHead(nn.Module):
    """``[B, 8ndf, 4, 4]`` (+ sentence ``[B, D]``) -> one logit per image ``[B]``."""

    def __init__(self, channels: int, text_dim: int, conditional: bool, spectral: bool, batchnorm: bool = True) -> None:
        super().__init__()
        self.text_dim = text_dim
        self.joint = conv3x3_leaky(channels * 8 + text_dim, channels * 8, spectral, batchnorm) if conditional else None
        self.logits = nn.Sequential(_conv(channels * 8, 1, 4, 4, 0, spectral, bias=True))

    def forward(self, features: torch.Tensor, sentence: torch.Tensor | None = None) -> torch.Tensor:
        if self.joint is not None:
            if sentence is None:
                raise ValueError("the conditional head needs sentence features")
            cond = sentence.view(-1, self.text_dim, 1, 1).expand(-1, -1, features.shape[2], features.shape[3])
            features = self.joint(torch.cat((features, cond), dim=1))
        return self.logits(features).view(-1)


class ProjectionHead(nn.Module):
    """``[B, 8ndf, 4, 4]`` and sentence ``[B, D]`` -> ``linear(h) + <embed(s), h>`` ``[B]``, ``h`` the
    features summed over positions (the projection discriminator of Miyato & Koyama, 2018)."""

    def __init__(self, channels: int, text_dim: int, spectral: bool) -> None:
        super().__init__()
        self.text_dim = text_dim
        self.linear = maybe_spectral_norm(nn.Linear(channels * 8, 1), spectral)
        self.embed = maybe_spectral_norm(nn.Linear(text_dim, channels * 8, bias=False), spectral)

    def forward(self, features: torch.Tensor, sentence: torch.Tensor | None = None) -> torch.Tensor:
        if sentence is None:
            raise ValueError("the conditional head needs sentence features")
        h = features.sum(dim=(2, 3))  # [B, 8ndf]
        return self.linear(h).view(-1) + (self.embed(sentence) * h).sum(dim=1)


class Discriminator(nn.Module):
    """Image ``[B, 3, S, S]`` -> features ``[B, 8ndf, 4, 4]``; heads give the logits."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        ndf, sn, bn = config.channels, config.spectral_norm, config.batchnorm
        self.encode = encode_to_4x4(config.image_size, ndf, sn, bn)
        steps = min(int(math.log2(config.image_size // 4)), 4)
        extra = int(math.log2(config.image_size // 64)) if config.image_size >= 64 else 0
        # beyond 64x64: more stride-2 blocks widening to 8ndf * 2^k, then 3x3 blocks back to 8ndf
        self.downsample = nn.Sequential(*[down_block(ndf * 8 * 2**i, ndf * 8 * 2 ** (i + 1), sn, bn)
                                          for i in range(extra)])
        reduce = [conv3x3_leaky(ndf * 8 * 2 ** (i + 1), ndf * 8 * 2**i, sn, bn) for i in reversed(range(extra))]
        if steps < 4:  # small images: widen to 8ndf
            reduce.append(conv3x3_leaky(ndf * 2 ** (steps - 1), ndf * 8, sn, bn))
        self.reduce = nn.Sequential(*reduce)
        width = ndf * 2 ** min(steps - 1, 1)
        self.self_attention = SelfAttention(width, sn) if config.self_attention else None
        self.unconditional_head = DiscriminatorHead(ndf, config.text_dim, False, sn) if config.unconditional else None
        self.conditional_head: nn.Module = (DiscriminatorHead(ndf, config.text_dim, True, sn, bn)
                                            if config.conditioning == "concat"
                                            else ProjectionHead(ndf, config.text_dim, sn))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` -> ``[B, 8ndf, 4, 4]``."""
        if images.shape[-1] != self.config.image_size:
            raise ValueError(f"discriminator for {self.config.image_size}px got {images.shape[-1]}px images")
        x = images
        for i, layer in enumerate(self.encode):
            x = layer(x)
            # self-attention after the second stride-2 block (or the first, for tiny images)
            if self.self_attention is not None and i == min(4, len(self.encode) - 1):
                x = self.self_attention(x)
        return self.reduce(self.downsample(x))

    def logits(self, features: torch.Tensor, sentence: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(conditional [B], unconditional [B] or None)`` logits for encoded features."""
        cond = self.conditional_head(features, sentence)
        uncond = self.unconditional_head(features) if self.unconditional_head is not None else None
        return cond, uncond


class FeatureDiscriminator(nn.Module):
    """A conditional discriminator over a fixed image encoder's region features (a vision-aided
    discriminator, Kumari et al. 2022: a small trainable head on features that already tell the
    words apart): regions ``[B, C, h, w]`` -> features ``[B, 8ndf, h, w]``; :attr:`conditional_head`
    (a projection on the sentence ``[B, D]``) gives the logits ``[B]``."""

    def __init__(self, feature_dim: int, text_dim: int, channels: int = 16, spectral: bool = False) -> None:
        super().__init__()
        self.trunk = nn.Sequential(_conv(feature_dim, channels * 4, 3, 1, 1, spectral, bias=True),
                                   nn.LeakyReLU(0.2, inplace=True),
                                   _conv(channels * 4, channels * 8, 3, 1, 1, spectral, bias=True),
                                   nn.LeakyReLU(0.2, inplace=True))
        self.conditional_head = ProjectionHead(channels, text_dim, spectral)

    def forward(self, regions: torch.Tensor) -> torch.Tensor:
        """``[B, C, h, w]`` -> ``[B, 8ndf, h, w]``."""
        return self.trunk(regions)
