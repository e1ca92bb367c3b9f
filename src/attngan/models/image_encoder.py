"""DAMSM image encoders: region features ``[B, D, h, w]`` and a global code ``[B, D]``.

``InceptionImageEncoder`` is the paper's (Inception-v3 to Mixed_7c, regions from the
17x17 Mixed_6e map). ``LightImageEncoder`` has the same interface and costs a few
MFLOP per image, so DAMSM training and the generator's DAMSM loss fit on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ImageEncoderConfig
from .layers import conv1x1

INCEPTION_BLOCKS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
)


class InceptionTrunk(nn.Module):
    """torchvision's Inception-v3 blocks up to Mixed_7c (no auxiliary head, no classifier)."""

    Conv2d_1a_3x3: nn.Module
    Conv2d_2a_3x3: nn.Module
    Conv2d_2b_3x3: nn.Module
    Conv2d_3b_1x1: nn.Module
    Conv2d_4a_3x3: nn.Module
    Mixed_7a: nn.Module
    Mixed_7b: nn.Module
    Mixed_7c: nn.Module

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        full = inception_v3(weights=None, aux_logits=False, init_weights=False)
        for name in INCEPTION_BLOCKS:
            self.add_module(name, getattr(full, name))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, 299, 299]`` -> ``(Mixed_6e [B, 768, 17, 17], pooled Mixed_7c [B, 2048])``."""
        x = self.Conv2d_1a_3x3(x)
        x = self.Conv2d_2a_3x3(x)
        x = self.Conv2d_2b_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_3b_1x1(x)
        x = self.Conv2d_4a_3x3(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            x = getattr(self, name)(x)
        regions = x
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return regions, pooled


class InceptionImageEncoder(nn.Module):
    """The paper's DAMSM image encoder (the original ``CNN_ENCODER``)."""

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = InceptionTrunk()
        self.project_regions = conv1x1(768, config.embedding_dim)
        self.project_global = nn.Linear(2048, config.embedding_dim)

    def reset_parameters_original(self) -> None:
        """The original's initialisation of the two projections: U(-0.1, 0.1)."""
        nn.init.uniform_(self.project_regions.weight, -0.1, 0.1)
        nn.init.uniform_(self.project_global.weight, -0.1, 0.1)

    def freeze_trunk(self) -> None:
        """Stop gradients into the ImageNet trunk, as the paper does."""
        for p in self.trunk.parameters():
            p.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, H, W]`` in [-1, 1] -> ``(regions [B, D, 17, 17], global [B, D])``."""
        x = F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
        regions, pooled = self.trunk(x)
        return self.project_regions(regions), self.project_global(pooled)


class LightImageEncoder(nn.Module):
    """A small strided CNN with the DAMSM encoder's interface.

    Regions come from the map at 1/8 of ``image_size`` (8x8 for 64x64 input), the global
    code from a further downsampled, average-pooled map.
    """

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config.light_channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2, inplace=True)
        )
        widths = [c, c * 2, c * 4, c * 8]
        self.to_regions = nn.Sequential(*[_down(widths[i], widths[i + 1]) for i in range(3)])
        self.to_global = nn.Sequential(_down(widths[3], widths[3] * 2), _down(widths[3] * 2, widths[3] * 2))
        self.project_regions = conv1x1(widths[3], config.embedding_dim)
        self.project_global = nn.Linear(widths[3] * 2, config.embedding_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, H, W]`` in [-1, 1] -> ``(regions [B, D, s/8, s/8], global [B, D])``."""
        size = self.config.image_size
        if images.shape[-1] != size or images.shape[-2] != size:
            # antialiased resizing has no bf16 kernel on CPU: it runs in fp32 (autocast casts back)
            images = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > size)
        regions = self.to_regions(self.stem(images))
        pooled = self.to_global(regions).mean(dim=(2, 3))
        return self.project_regions(regions), self.project_global(pooled)

    def freeze_trunk(self) -> None:  # same interface; nothing is pretrained here
        return None


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


ImageEncoder = InceptionImageEncoder | LightImageEncoder


def build_image_encoder(config: ImageEncoderConfig) -> ImageEncoder:
    """Build the encoder named by ``config.kind`` (weights are loaded separately)."""
    if config.kind == "inception":
        return InceptionImageEncoder(config)
    return LightImageEncoder(config)


def load_inception_imagenet_weights(encoder: InceptionImageEncoder, state_dict: dict[str, torch.Tensor]) -> None:
    """Copy torchvision ImageNet Inception-v3 weights into the trunk and freeze it.

    ``state_dict`` is torchvision's ``inception_v3_google`` state dict (read by the caller
    from a local file); its auxiliary head and classifier are ignored.
    """
    trunk_keys = set(encoder.trunk.state_dict())
    picked = {k: v for k, v in state_dict.items() if k in trunk_keys}
    missing = sorted(trunk_keys - set(picked) - {k for k in trunk_keys if k.endswith("num_batches_tracked")})
    if missing:
        raise ValueError(f"ImageNet Inception weights lack {len(missing)} trunk entries, e.g. {missing[0]}")
    encoder.trunk.load_state_dict(picked, strict=False)
    if encoder.config.freeze_trunk:
        encoder.freeze_trunk()
