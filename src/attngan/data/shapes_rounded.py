"""Rounded negatives: each training scene of the shapes data drawn again with its shapes' silhouettes
smoothed, a hard-negative *image* of its caption.

A generator that has not learnt a shape draws a rounded version of it (a star with blunt points
reads as a hexagon, a cross as a circle); encoders that have only seen crisp shapes may still
match such an image to its caption, and then teach the generator nothing more about the shape. The
rounded rendering keeps everything else of the scene (colours, sizes, places, background, jitter)
and changes only the outline: each object's silhouette is blurred by a Gaussian of standard
deviation ``strength`` x its radius and cut at half height, which rounds convex corners and fills
concave ones. The DAMSM losses then rank the caption's own image above its rounded twin
(the caption->image terms; :func:`attngan.losses.damsm.damsm_losses`). Circles do not change, so a
scene of circles only has no rounded negative (``rounded_valid`` False).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from .common import ItemExtras, stage_tensors
from .shapes import (
    BACKGROUND_RGB,
    COLOR_RGB,
    POSITION_CENTERS,
    SIZE_RADIUS,
    UNIT_POLYGONS,
    Scene,
    ShapesDataset,
    render_shapes,
)

SUPERSAMPLE = 4


def render_rounded(scene: Scene, size: int, strength: float) -> Image.Image:
    """``scene`` drawn at ``size`` px with every non-circle object's silhouette smoothed by a Gaussian
    of ``strength`` times its radius (then cut at half height); ``strength`` 0 is
    :func:`~attngan.data.shapes.render_shapes`."""
    if strength < 0:
        raise ValueError(f"rounding strength must be >= 0, got {strength}")
    if strength == 0:
        return render_shapes(scene.objects, scene.background, size)
    side = size * SUPERSAMPLE
    img = Image.new("RGB", (side, side), BACKGROUND_RGB[scene.background])
    for obj in scene.objects:
        fx, fy = POSITION_CENTERS[obj.position]
        cx, cy = (fx + obj.dx) * side, (fy + obj.dy) * side
        r = SIZE_RADIUS[obj.size] * obj.scale * side
        sigma = strength * r if obj.shape != "circle" else 0.0
        # work on the object's box, with room for the blur: the same pixels as the whole canvas
        margin = int(math.ceil(3 * sigma)) + 2
        x0, y0 = max(0, int(cx - r) - margin), max(0, int(cy - r) - margin)
        x1, y1 = min(side, int(math.ceil(cx + r)) + margin), min(side, int(math.ceil(cy + r)) + margin)
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        draw = ImageDraw.Draw(mask)
        ox, oy = cx - x0, cy - y0
        if obj.shape == "circle":
            draw.ellipse([ox - r, oy - r, ox + r, oy + r], fill=255)
        else:
            draw.polygon([(ox + r * x, oy + r * y) for x, y in UNIT_POLYGONS[obj.shape]], fill=255)
            mask = mask.filter(ImageFilter.GaussianBlur(sigma)).point(lambda v: 255 if v >= 128 else 0)
        fill = tuple(int(min(255, max(0, c + t))) for c, t in zip(COLOR_RGB[obj.color], obj.tint))
        img.paste(fill, (x0, y0, x1, y1), mask)
    return img.reduce(SUPERSAMPLE)


class RoundedNegatives(ItemExtras):
    """A shapes data set whose items also carry ``rounded_images`` (``[3, S, S]``, the scene at the
    largest stage size with rounded silhouettes, :func:`render_rounded`) and ``rounded_valid``
    (False for scenes of circles only, which rounding leaves as they are)."""

    def __init__(self, dataset: Any, strength: float) -> None:
        base = getattr(dataset, "dataset", dataset)  # under the counterfactual captions' wrapper
        if not isinstance(base, ShapesDataset):
            raise ValueError(f"rounded negatives need the shapes data set, got {type(base).__name__}")
        if not strength > 0:
            raise ValueError(f"rounding strength must be > 0, got {strength}")
        self.dataset, self.shapes, self.strength = dataset, base, float(strength)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        scene = self.shapes.scene(index % len(self.shapes))
        size = self.shapes.image_sizes[-1]
        rounded = stage_tensors(render_rounded(scene, size, self.strength), (size,))[0]
        valid = any(obj.shape != "circle" for obj in scene.objects)
        return {**item, "rounded_images": rounded, "rounded_valid": torch.tensor(valid)}


def rounded_difference(scene: Scene, size: int, strength: float) -> float:
    """Mean absolute pixel difference (0-255) between a scene and its rounded rendering."""
    plain = np.asarray(render_shapes(scene.objects, scene.background, size), dtype=np.float32)
    return float(np.abs(plain - np.asarray(render_rounded(scene, size, strength), dtype=np.float32)).mean())
