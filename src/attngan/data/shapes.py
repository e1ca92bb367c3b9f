"""The built-in procedural data set: coloured shapes on a plain background, with captions.

No files are involved: image ``index`` of a split is a pure function of
``(seed, split, index)``. A scene holds one or two objects, each a shape, a colour, a
size and a position (``SHAPES``, ``COLORS``, ``SIZES``, ``POSITIONS``), with a little
jitter in place, scale and tint. Every image has ``captions_per_image`` (10) captions
from the templates below; colour, shape and position words always appear verbatim, sizes
through ``SIZE_WORDS`` synonyms. The last templates of each list are used only by the
test split (held-out phrasings made of words the training captions use too).

Images are not augmented (a flip or crop would contradict the position words); training
mode only picks a random caption.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from ..text import PAD_TOKEN, Vocabulary, subsample_ids, tokenize
from .common import check_image_sizes, stage_tensors

SHAPES = ("circle", "square", "triangle", "star", "heart", "diamond", "cross", "hexagon")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "center")
BACKGROUNDS = ("black", "white", "dark gray", "light gray")

COLOR_RGB = {"red": (220, 30, 30), "green": (30, 175, 45), "blue": (35, 75, 235), "yellow": (250, 230, 20),
             "purple": (140, 50, 190), "orange": (245, 130, 15), "cyan": (30, 210, 220), "pink": (245, 120, 190)}
BACKGROUND_RGB = {"black": (0, 0, 0), "white": (255, 255, 255), "dark gray": (64, 64, 64),
                  "light gray": (192, 192, 192)}
SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big")}
POSITION_PHRASES = {
    "left": ("on the left", "at the left", "to the left"),
    "right": ("on the right", "at the right", "to the right"),
    "top": ("at the top", "on the top", "near the top"),
    "bottom": ("at the bottom", "on the bottom", "near the bottom"),
    "center": ("in the center", "at the center", "near the center"),
}
POSITION_CENTERS = {"left": (0.19, 0.5), "right": (0.81, 0.5), "top": (0.5, 0.19), "bottom": (0.5, 0.81),
                    "center": (0.5, 0.5)}
SIZE_RADIUS = {"small": 0.1, "large": 0.16}  # circumradius, fraction of the image side

ONE_OBJECT_TEMPLATES = (
    "a {size} {color} {shape} {pos}",
    "there is a {size} {color} {shape} {pos}",
    "a {size} {color} {shape} {pos} on a {bg} background",
    "this image shows a {size} {color} {shape} {pos}",
    "a {color} {shape} {pos}, it is {size}",
    "{pos} there is a {size} {color} {shape}",
    "a {size} {shape} in {color} {pos}",
    "the picture has one {size} {color} {shape} {pos}",
    "a {bg} background with a {size} {color} {shape} {pos}",
    "one {size} {color} {shape} placed {pos}",
    "a {size} {color} {shape} is {pos}",
    "a {color} {shape}, {size}, {pos} on a {bg} background",
    # test split only
    "{pos} is a {size} {color} {shape}",
    "there is one {size} {shape} in {color} {pos}",
    "the {color} {shape} {pos} is {size}",
    "a {size} {color} {shape} placed {pos} on a {bg} background",
)
TWO_OBJECT_TEMPLATES = (
    "a {size0} {color0} {shape0} {pos0} and a {size1} {color1} {shape1} {pos1}",
    "there is a {size0} {color0} {shape0} {pos0} and a {size1} {color1} {shape1} {pos1}",
    "{pos0} a {size0} {color0} {shape0} and {pos1} a {size1} {color1} {shape1}",
    "a {size0} {color0} {shape0} {pos0}, a {size1} {color1} {shape1} {pos1}",
    "this image shows a {size0} {color0} {shape0} {pos0} and a {size1} {color1} {shape1} {pos1}",
    "{size0} {color0} {shape0} {pos0} and {size1} {color1} {shape1} {pos1} on a {bg} background",
    "one {size0} {color0} {shape0} {pos0} and one {size1} {color1} {shape1} {pos1}",
    "a {size0} {color0} {shape0} is {pos0} and a {size1} {color1} {shape1} is {pos1}",
    "the picture has a {size0} {color0} {shape0} {pos0} and a {size1} {color1} {shape1} {pos1}",
    "a {size0} {color0} {shape0} placed {pos0} and a {size1} {color1} {shape1} placed {pos1}",
    # test split only
    "{pos0} is a {size0} {color0} {shape0} and {pos1} is a {size1} {color1} {shape1}",
    "there is one {size0} {color0} {shape0} {pos0} and one {size1} {color1} {shape1} {pos1}",
    "a {size1} {color1} {shape1} {pos1} and a {size0} {color0} {shape0} {pos0}",
)
TEST_ONLY_TEMPLATES = {1: 4, 2: 3}  # how many trailing templates only the test split uses
SPLIT_CODES = {"train": 0, "test": 1}


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene; ``dx``, ``dy`` (fractions of the side), ``scale`` and ``tint``
    (added to the RGB colour) are small jitters that do not change the description."""

    shape: str
    color: str
    size: str
    position: str
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    tint: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.shape, SHAPES, "shape"), (self.color, COLORS, "color"),
                                     (self.size, SIZES, "size"), (self.position, POSITIONS, "position")):
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")

    @property
    def attributes(self) -> tuple[int, int, int, int]:
        """``(shape, colour, size, position)`` indices."""
        return (SHAPES.index(self.shape), COLORS.index(self.color), SIZES.index(self.size),
                POSITIONS.index(self.position))


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeObject, ...]
    background: str


def _as_object(obj: ShapeObject | Mapping[str, Any]) -> ShapeObject:
    return obj if isinstance(obj, ShapeObject) else ShapeObject(**obj)


# --------------------------------------------------------------------------- rendering


def _unit_polygons() -> dict[str, list[tuple[float, float]]]:
    def ring(n: int, radius: float, start: float) -> list[tuple[float, float]]:
        return [(radius * math.cos(start + 2 * math.pi * k / n), radius * math.sin(start + 2 * math.pi * k / n))
                for k in range(n)]

    star = [(r * math.cos(-math.pi / 2 + math.pi * k / 5), r * math.sin(-math.pi / 2 + math.pi * k / 5) + 0.09)
            for k, r in zip(range(10), [1.0, 0.45] * 5)]
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    hx, hy = 16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    hx, hy = hx - (hx.max() + hx.min()) / 2, hy - (hy.max() + hy.min()) / 2
    scale = 0.95 / max(np.abs(hx).max(), np.abs(hy).max())
    w, s = 0.3, 0.85
    return {
        "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
        "triangle": [(x, y + 0.25) for x, y in ring(3, 1.0, -math.pi / 2)],
        "star": star,
        "heart": [(float(x * scale), float(y * scale)) for x, y in zip(hx, hy)],
        "diamond": [(0.0, -1.0), (0.65, 0.0), (0.0, 1.0), (-0.65, 0.0)],
        "cross": [(-w, -s), (w, -s), (w, -w), (s, -w), (s, w), (w, w), (w, s), (-w, s), (-w, w), (-s, w), (-s, -w),
                  (-w, -w)],
        "hexagon": ring(6, 0.92, 0.0),
    }


UNIT_POLYGONS = _unit_polygons()


_CANVASES = threading.local()


def _canvas(side: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A reusable drawing canvas per thread (allocating a large image per call is slow)."""
    cache = _CANVASES.__dict__.setdefault("by_side", {})
    if side not in cache:
        img = Image.new("RGB", (side, side))
        cache[side] = (img, ImageDraw.Draw(img))
    return cache[side]


def render_shapes(objects: Sequence[ShapeObject | Mapping[str, Any]], background: str, size: int,
                  supersample: int | None = None) -> Image.Image:
    """Draw ``objects`` on a ``background`` (a ``BACKGROUNDS`` name): an RGB ``size x size``
    PIL image, drawn at ``supersample`` times the size (4 up to 128 px, else 2) and
    box-filtered down for antialiasing."""
    if background not in BACKGROUND_RGB:
        raise ValueError(f"unknown background {background!r}; choose one of {', '.join(BACKGROUNDS)}")
    factor = supersample or (4 if size <= 128 else 2)
    side = size * factor
    img, draw = _canvas(side)
    img.paste(BACKGROUND_RGB[background], (0, 0, side, side))
    for obj in map(_as_object, objects):
        fx, fy = POSITION_CENTERS[obj.position]
        cx, cy = (fx + obj.dx) * side, (fy + obj.dy) * side
        r = SIZE_RADIUS[obj.size] * obj.scale * side
        fill = tuple(int(min(255, max(0, c + t))) for c, t in zip(COLOR_RGB[obj.color], obj.tint))
        if obj.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon([(cx + r * x, cy + r * y) for x, y in UNIT_POLYGONS[obj.shape]], fill=fill)
    return img.reduce(factor) if factor > 1 else img.copy()  # never hand out the shared canvas


def random_scene(rng: np.random.Generator, max_objects: int = 1, min_objects: int | None = None) -> Scene:
    """A random scene of ``min_objects``..``max_objects`` (1 or 2) objects at distinct positions."""
    low = max_objects if min_objects is None else min_objects
    if not 1 <= low <= max_objects <= 2:
        raise ValueError(f"objects per scene must satisfy 1 <= min <= max <= 2, got {low}..{max_objects}")
    u = rng.random(7 + 9 * max_objects)  # one draw: cheap, and the layout of the draws is fixed
    count = low + int(u[0] * (max_objects - low + 1))
    positions = np.argsort(u[2:7], kind="stable")[:count]
    objects = []
    for k, position in enumerate(positions):
        v = u[7 + 9 * k: 16 + 9 * k]
        tint = tuple(int(t) for t in (v[6:9] * 17).astype(np.int64) - 8)
        objects.append(ShapeObject(SHAPES[int(v[0] * len(SHAPES))], COLORS[int(v[1] * len(COLORS))],
                                   SIZES[int(v[2] * len(SIZES))], POSITIONS[int(position)],
                                   float(v[3] * 0.03 - 0.015), float(v[4] * 0.03 - 0.015), float(0.93 + 0.14 * v[5]),
                                   tint))  # type: ignore[arg-type]
    return Scene(tuple(objects), BACKGROUNDS[int(u[1] * len(BACKGROUNDS))])


# --------------------------------------------------------------------------- captions


def templates_for(num_objects: int) -> tuple[str, ...]:
    if num_objects not in (1, 2):
        raise ValueError(f"captions exist for 1 or 2 objects, got {num_objects}")
    return ONE_OBJECT_TEMPLATES if num_objects == 1 else TWO_OBJECT_TEMPLATES


def _format(objects: Sequence[ShapeObject], background: str, template_index: int, choices: np.ndarray) -> str:
    fields = {"bg": background}
    for k, obj in enumerate(objects):
        suffix = "" if len(objects) == 1 else str(k)
        sizes, places = SIZE_WORDS[obj.size], POSITION_PHRASES[obj.position]
        fields.update({f"size{suffix}": sizes[int(choices[k, 0]) % len(sizes)], f"color{suffix}": obj.color,
                       f"shape{suffix}": obj.shape, f"pos{suffix}": places[int(choices[k, 1]) % len(places)]})
    text = templates_for(len(objects))[template_index].format(**fields)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def caption_for(objects: Sequence[ShapeObject | Mapping[str, Any]], background: str, template_index: int,
                rng: np.random.Generator | None = None) -> str:
    """Caption ``template_index`` of ``templates_for(len(objects))`` for a scene; synonyms
    are drawn from ``rng`` (the first of each when None)."""
    objects = [_as_object(o) for o in objects]
    choices = np.zeros((len(objects), 2), np.int64) if rng is None else rng.integers(0, 6, size=(len(objects), 2))
    return _format(objects, background, template_index, choices)


def caption_plan(rng: np.random.Generator, split: str, num_objects: int, count: int) -> list[tuple[int, np.ndarray]]:
    """Templates and synonym draws of an image's ``count`` captions: the test split uses
    every test-only template first, the train split never does."""
    n = len(templates_for(num_objects))
    n_train = n - TEST_ONLY_TEMPLATES[num_objects]
    u = rng.random(n_train + count + count * num_objects * 2)
    order = [int(t) for t in np.argsort(u[:n_train], kind="stable")]
    chosen = list(range(n_train, n)) if split == "test" else []
    while len(chosen) < count:
        chosen += order
    if split == "test":
        chosen = [chosen[k] for k in np.argsort(u[n_train:n_train + count], kind="stable")]
    draws = (u[n_train + count:] * 6).astype(np.int64).reshape(count, num_objects, 2)
    picked = chosen[:count]
    return [(t, draws[k]) for k, t in enumerate(picked)]


def shapes_vocabulary() -> Vocabulary:
    """Every word any template can produce: ``<end>`` then the words sorted."""
    words = {"an"}
    for template in ONE_OBJECT_TEMPLATES + TWO_OBJECT_TEMPLATES:
        words.update(tokenize(re.sub(r"\{\w+\}", " ", template)))
    values = [*SHAPES, *COLORS, *BACKGROUNDS, *(w for ws in SIZE_WORDS.values() for w in ws),
              *(p for ps in POSITION_PHRASES.values() for p in ps)]
    for value in values:
        words.update(tokenize(value))
    return Vocabulary([PAD_TOKEN, *sorted(words)])


# --------------------------------------------------------------------------- data set


class ShapesDataset(Dataset):
    """Procedural captioned shapes (see the module doc).

    Args:
        split: ``"train"`` or ``"test"`` (different scenes and held-out phrasings).
        image_sizes: stage sizes, any up to 256, e.g. ``(64,)`` or ``(16, 32, 64)``.
        max_words: caption length cap; longer captions are subsampled in order (train)
            or cut (eval). No template exceeds 18 words.
        train: random caption choice (default ``split == "train"``).
        seed: scene ``index`` of a split is a function of ``(seed, split, index)``.
        size: number of images (default 10,000 train / 1,000 test).
        max_objects / min_objects: objects per scene (1 or 2; ``min_objects`` defaults to
            ``max_objects``).
        captions_per_image: captions made for each image (10).
        vocab: defaults to ``shapes_vocabulary()``; unknown words of another are dropped.
        skip_bad, missing, cache_dir: accepted for a uniform interface with the file-backed
            data sets; nothing can be bad or missing here, and drawing needs no cache.

    Items as :class:`~attngan.data.base.CaptionImageDataset`, with ``attributes`` =
    ``[shape, colour, size, position]`` per object slot (``-1`` for an absent second
    object) and ``class_id`` = the attribute combination of object 0.
    """

    attribute_names = ("shape", "color", "size", "position")
    attribute_values = (SHAPES, COLORS, SIZES, POSITIONS)
    num_classes = len(SHAPES) * len(COLORS) * len(SIZES) * len(POSITIONS)

    def __init__(self, split: str = "train", image_sizes: Sequence[int] = (64,), max_words: int = 18,
                 train: bool | None = None, seed: int = 0, size: int | None = None, max_objects: int = 1,
                 min_objects: int | None = None, captions_per_image: int = 10, vocab: Vocabulary | None = None,
                 skip_bad: bool = False, missing: str = "error", cache_dir: object = None) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.image_sizes = check_image_sizes(image_sizes)
        if self.image_sizes[-1] > 256:
            raise ValueError(f"shapes are drawn up to 256 px, got {self.image_sizes[-1]}")
        if max_words < 1 or seed < 0 or captions_per_image < 1:
            raise ValueError("max_words and captions_per_image must be >= 1 and seed >= 0")
        random_scene(np.random.default_rng(0), max_objects, min_objects)  # validates the counts
        self.split, self.seed, self.max_words = split, int(seed), int(max_words)
        self.train = split == "train" if train is None else bool(train)
        self.size = int(size if size is not None else (10_000 if split == "train" else 1_000))
        self.max_objects, self.min_objects = max_objects, min_objects
        self.captions_per_image = captions_per_image
        self.vocab = vocab or shapes_vocabulary()
        own = shapes_vocabulary().words[1:]  # unknown words of a given vocabulary, by kind of word
        self.num_words = len(own)
        self.unknown_words = {w: 1 for w in own if w not in self.vocab}
        self.skip_bad = skip_bad
        self.skipped: dict[str, list[str]] = {}
        self.missing: list[str] = []
        self.epoch = 0

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def scene(self, index: int) -> Scene:
        return self._scene_and_plan(index)[0]

    def _scene_and_plan(self, index: int) -> tuple[Scene, list[tuple[int, np.ndarray]]]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} items")
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        scene = random_scene(rng, self.max_objects, self.min_objects)
        return scene, caption_plan(rng, self.split, len(scene.objects), self.captions_per_image)

    def captions(self, index: int) -> list[str]:
        """The ``captions_per_image`` caption texts of image ``index``."""
        scene, plan = self._scene_and_plan(index)
        return [_format(scene.objects, scene.background, t, c) for t, c in plan]

    def all_captions(self, index: int) -> list[list[int]]:
        """Token ids of every caption of image ``index`` (not truncated)."""
        return [self.vocab.encode_tokens(tokenize(text))[0] for text in self.captions(index)]

    def caption_text(self, index: int, caption_index: int) -> str:
        return self.captions(index)[caption_index]

    def attributes(self, scene: Scene) -> list[int]:
        values = [a for obj in scene.objects for a in obj.attributes]
        return values + [-1] * (4 * self.max_objects - len(values))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += self.size
        scene, plan = self._scene_and_plan(index)
        rng = np.random.default_rng([self.seed, 2 + SPLIT_CODES[self.split], self.epoch, index]) if self.train else None
        caption_index = int(rng.integers(len(plan))) if rng is not None else index % len(plan)
        template, choices = plan[caption_index]
        text = _format(scene.objects, scene.background, template, choices)
        ids = self.vocab.encode_tokens(tokenize(text))[0]
        if not ids:
            raise ValueError(f"no word of {text!r} is in the vocabulary given")
        if len(ids) > self.max_words:
            ids = subsample_ids(ids, self.max_words, rng) if rng is not None else ids[: self.max_words]
        tokens = np.zeros(self.max_words, np.int64)
        tokens[: len(ids)] = ids
        s, c, z, p = scene.objects[0].attributes
        return {
            "images": stage_tensors(render_shapes(scene.objects, scene.background, self.image_sizes[-1]),
                                    self.image_sizes),
            "tokens": torch.from_numpy(tokens),
            "length": len(ids),
            "class_id": ((s * len(COLORS) + c) * len(SIZES) + z) * len(POSITIONS) + p,
            "key": f"shapes-{self.split}-{index}",
            "caption_index": caption_index,
            "attributes": torch.from_numpy(np.array(self.attributes(scene), np.int64)),
        }
