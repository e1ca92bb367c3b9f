"""The slot network of a scene classifier: one reading per region ("cell") of the image.

Scenes of a few objects on a plain background, each object inside its own cell (the shapes
data set's layout), are read cell by cell:

- the background colour is the per-channel median of the image (objects cover well under
  half of it); the *silhouette* of everything else is the distance of each pixel's colour to
  it, mapped linearly from ``mask_low`` (0: faint texture and noise count as background) to
  ``mask_high`` (1: every real object colour is further than that from every background);
- each cell (plus a ``context`` margin) is resampled to ``crop_size`` px; a small CNN on
  the silhouette crop alone gives the cell's features, read by heads shared by all cells:
  occupancy, shape and size. Shape therefore never sees colour, and a shape x colour pair
  that training never showed is read as well as any other;
- colour: a per-pixel (1x1) network on the RGB crop, averaged with the silhouette as weights
  over the cell proper, then a shared colour head: it never sees the shape;
- background: a small MLP on the estimated background colour.

Outputs follow the head layout ``[background, then per cell: occupied (2), shape, colour,
size]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Box = tuple[float, float, float, float]


def estimate_background(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` -> ``[N, 3]``: the per-channel median over the image."""
    return images.flatten(2).median(dim=2).values


def silhouette(images: torch.Tensor, background: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``[N, 1, H, W]`` in [0, 1]: the distance of each pixel to the background colour ``[N, 3]``
    (in [-1, 1] units), 0 up to ``low``, 1 from ``high``, linear between."""
    distance = (images - background[:, :, None, None]).norm(dim=1, keepdim=True)
    return ((distance - low) / (high - low)).clamp(0, 1)


def crop(images: torch.Tensor, box: Box, context: float, size: int) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, C, size, size]``: the box (fractions of the side) widened by
    ``context`` of its side on each edge, resampled bilinearly (edges replicated outside)."""
    x0, y0, x1, y1 = box
    sx, sy = (x1 - x0) * (1 + 2 * context), (y1 - y0) * (1 + 2 * context)
    theta = torch.tensor([[sx, 0.0, x0 + x1 - 1.0], [0.0, sy, y0 + y1 - 1.0]], dtype=images.dtype,
                         device=images.device)
    grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), [images.shape[0], images.shape[1], size, size],
                         align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class SlotNetwork(nn.Module):
    """Per-cell heads over a silhouette CNN and a per-pixel colour network (see the module doc).

    ``num_values``: values of the background head, then per cell (2, shapes, colours, sizes).
    """

    window: torch.Tensor

    def __init__(self, cells: Sequence[Box], num_values: Sequence[int], channels: int = 16, feature_dim: int = 64,
                 colour_dim: int = 16, crop_size: int = 28, context: float = 0.15, mask_low: float = 0.2,
                 mask_high: float = 0.5) -> None:
        super().__init__()
        self.cells: tuple[Box, ...] = tuple((float(c[0]), float(c[1]), float(c[2]), float(c[3])) for c in cells)
        if not 0 <= mask_low < mask_high:
            raise ValueError(f"silhouette thresholds must satisfy 0 <= mask_low < mask_high, got {mask_low}, {mask_high}")
        self.crop_size, self.context, self.mask_low, self.mask_high = crop_size, context, mask_low, mask_high
        values = tuple(num_values)
        per_cell = values[1:5]
        if len(values) != 1 + 4 * len(self.cells) or values[1:] != per_cell * len(self.cells) or per_cell[0] != 2:
            raise ValueError(f"head values {values} do not fit {len(self.cells)} cells of (2, shapes, colours, sizes)")
        c = channels
        self.silhouette_net = nn.Sequential(
            nn.Conv2d(1, c, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.BatchNorm2d(4 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(), nn.Linear(4 * c * (crop_size // 4) ** 2, feature_dim), nn.ReLU(inplace=True))
        self.colour_net = nn.Sequential(nn.Conv2d(3, colour_dim, 1), nn.LeakyReLU(0.2, inplace=True),
                                        nn.Conv2d(colour_dim, colour_dim, 1), nn.LeakyReLU(0.2, inplace=True))
        self.background_head = nn.Sequential(nn.Linear(3, 16), nn.LeakyReLU(0.2, inplace=True),
                                             nn.Linear(16, values[0]))
        self.occupancy_head = nn.Linear(feature_dim, 2)
        self.shape_head = nn.Linear(feature_dim, per_cell[1])
        self.colour_head = nn.Linear(colour_dim, per_cell[2])
        self.size_head = nn.Linear(feature_dim, per_cell[3])
        inner = crop_size * context / (1 + 2 * context)  # the context margin of a crop, in crop pixels
        window = torch.zeros(crop_size, crop_size)
        lo, hi = int(round(inner)), crop_size - int(round(inner))
        window[lo:hi, lo:hi] = 1.0
        self.register_buffer("window", window, persistent=False)
        self.feature_dim = len(self.cells) * (feature_dim + colour_dim) + 3

    def _read(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(background [N, 3], cell features [N, K, F], colour features [N, K, Cd])``."""
        background = estimate_background(images)
        mask = silhouette(images, background, self.mask_low, self.mask_high)
        both = torch.cat([mask, images], dim=1)
        crops = torch.stack([crop(both, cell, self.context, self.crop_size) for cell in self.cells], dim=1)
        n, k = crops.shape[:2]
        crops = crops.flatten(0, 1)  # [N*K, 4, s, s]
        features = self.silhouette_net(crops[:, :1])
        weights = crops[:, :1] * self.window
        colour = (self.colour_net(crops[:, 1:]) * weights).sum((2, 3)) / (weights.sum((2, 3)) + 1e-3)
        return background, features.reshape(n, k, -1), colour.reshape(n, k, -1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1] -> ``[N, feature_dim]``: every cell's features, then the background colour."""
        background, cells, colour = self._read(images)
        return torch.cat([torch.cat([cells, colour], dim=2).flatten(1), background], dim=1)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[N, 3, H, W]`` in [-1, 1] -> logits per head: ``[N, K_bg]``, then per cell ``[N, 2]``,
        ``[N, shapes]``, ``[N, colours]``, ``[N, sizes]``."""
        background, cells, colour = self._read(images)
        out = [self.background_head(background)]
        occupancy, shape, size, hue = (self.occupancy_head(cells), self.shape_head(cells), self.size_head(cells),
                                       self.colour_head(colour))
        for j in range(len(self.cells)):
            out += [occupancy[:, j], shape[:, j], hue[:, j], size[:, j]]
        return out
