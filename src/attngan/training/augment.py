"""Differentiable image augmentation for the generator's DAMSM term (pure tensor functions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_shifts(count: int, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """``[count, 2]`` integer shifts ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]``."""
    return torch.randint(-max_shift, max_shift + 1, (count, 2), generator=generator)


def shift_images(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` images each moved by its integer ``shifts[b] = (dy, dx)`` (``[B, 2]``; positive
    moves content down / right), the uncovered border filled by replicating the edge. Differentiable
    with respect to ``images``; a zero shift returns the image unchanged."""
    if shifts.shape != (images.shape[0], 2):
        raise ValueError(f"shifts must be [{images.shape[0]}, 2], got {list(shifts.shape)}")
    k = int(shifts.abs().max()) if shifts.numel() else 0
    if k == 0:
        return images
    h, w = images.shape[-2:]
    padded = F.pad(images, (k, k, k, k), mode="replicate")
    crops = [padded[i, :, k - dy:k - dy + h, k - dx:k - dx + w] for i, (dy, dx) in enumerate(shifts.tolist())]
    return torch.stack(crops)
