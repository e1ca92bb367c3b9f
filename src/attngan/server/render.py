"""Tensors -> PNG bytes: generated images, attention overlays and feature heat maps."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

from ..viz import MIN_PANEL, to_pil


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of a PIL image (fixed settings, so equal pixels give equal bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def images_to_png(images: torch.Tensor) -> list[bytes]:
    """``[N, 3, H, W]`` in [-1, 1] -> one PNG per image."""
    return [encode_png(im) for im in to_pil(images)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _normalise(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def attention_png(weights: torch.Tensor | np.ndarray) -> bytes:
    """A word's ``[H, W]`` attention -> RGBA "hot" heat map, transparent where attention is low.

    Like the original visualisation, each map is min-max normalised on its own.
    """
    v = _normalise(np.asarray(weights, dtype=np.float32))
    rgba = np.empty((*v.shape, 4), dtype=np.float32)
    rgba[..., 0] = np.clip(3 * v, 0, 1)
    rgba[..., 1] = np.clip(3 * v - 1, 0, 1)
    rgba[..., 2] = np.clip(3 * v - 2, 0, 1)
    rgba[..., 3] = v**1.5 * 0.8  # low attention stays see-through
    return encode_png(Image.fromarray((rgba * 255).round().astype(np.uint8), mode="RGBA"))


def signed_heatmap_png(matrix: torch.Tensor | np.ndarray) -> bytes:
    """A ``[rows, cols]`` matrix -> RGB heat map: blue (negative), white (0), red (positive)."""
    m = np.asarray(matrix, dtype=np.float32)
    scale = float(np.abs(m).max()) or 1.0
    v = np.clip(m / scale, -1, 1)
    pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
    rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], axis=-1)
    return encode_png(Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8), mode="RGB"))


def attention_strip(stage_png: bytes, word_pngs: list[bytes]) -> bytes:
    """The stage image with each word's attention laid over it, side by side (one tile per word).

    Tiles are at least ``MIN_PANEL`` (128) px: a smaller stage image is enlarged with nearest
    neighbours, the attention maps bilinearly."""
    base = Image.open(io.BytesIO(stage_png)).convert("RGBA")
    side = max(base.width, MIN_PANEL)
    if side != base.width:
        base = base.resize((side, side * base.height // base.width), Image.Resampling.NEAREST)
    tiles = max(1, len(word_pngs))
    strip = Image.new("RGBA", (base.width * tiles, base.height), (0, 0, 0, 255))
    for i, png in enumerate(word_pngs or [b""]):
        tile = base.copy()
        if png:
            overlay = Image.open(io.BytesIO(png)).convert("RGBA").resize(base.size, Image.Resampling.BILINEAR)
            tile = Image.alpha_composite(tile, overlay)
        strip.paste(tile, (i * base.width, 0))
    return encode_png(strip.convert("RGB"))
