"""The built-in procedural data set: one or two coloured shapes on a plain background, with captions.

No files are involved: image ``index`` of a split is a pure function of ``(seed, split,
index)``; every split draws its scenes from its own random stream, so no scene is shared.

**Scenes.** Half of the scenes (``two_object_fraction``) hold two objects, the others one.
An object is a shape (``SHAPES``), a colour (``COLORS``), a size (``SIZES``) and a position
(``POSITIONS``); the two objects of a scene are at different positions and are drawn
independently otherwise. The background is one of ``BACKGROUNDS`` (black, white, dark gray,
light gray). Each position owns one cell of a 3x3 grid (the plus-shaped five: left, right,
top, bottom and centre cells), and an object's bounding box always lies inside its cell,
``CELL_PADDING`` away from its edges: two objects can never overlap, whatever their sizes
and jitter. Within that, every real object is jittered: scale in ``SCALE_RANGE``, place
uniform over all the room its cell leaves (up to about +-4 px at 64 px for small objects,
about +-1 px for large ones), colour tint up to ``TINT`` per channel. So one description
has many real renderings (:meth:`ShapesDataset.variants`).

**Splits.** ``train`` (10,000 images by default) for training, ``validation`` (1,000) for
every tuning probe, ``test`` (1,000) for final figures only, and ``unseen`` (1,000).
``UNSEEN_PAIRS`` are 8 of the 64 shape x colour pairs, one per shape and one per colour;
no object of the train, validation or test splits has one of them (test = seen pairs),
and every scene of the unseen split has exactly one object with a held-out pair (the
other object of a two-object scene has a seen pair). ``"val"`` is accepted for validation.

**Captions.** Every image has ``captions_per_image`` (10) captions from the templates of
:mod:`attngan.data.shapes_captions`: objects named in scene order, colour and shape words
verbatim, synonyms for sizes ("big", "large" / "small", "tiny", "little"), positions ("in
the middle", "in the centre", "in the center", ...) and backgrounds ("dark grey" /
"dark gray"); about half of them name the background. The evaluation splits use held-out
phrasings too (made of words the training captions use). :func:`shapes_vocabulary` holds
every word any split can produce.

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
from .shapes_captions import (  # noqa: F401  (the caption names are re-exported here)
    BACKGROUND_WORDS,
    HELD_OUT_TEMPLATES,
    ONE_OBJECT_TEMPLATES,
    POSITION_PHRASES,
    SIZE_WORDS,
    TWO_OBJECT_TEMPLATES,
    caption_plan,
    first_synonyms,
    format_caption,
    names_background,
    templates_for,
)

SHAPES = ("circle", "square", "triangle", "star", "heart", "diamond", "cross", "hexagon")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "center")
BACKGROUNDS = ("black", "white", "dark gray", "light gray")
# Held out of train / validation / test: one pair per shape and per colour.
UNSEEN_PAIRS = (("circle", "yellow"), ("square", "cyan"), ("triangle", "purple"), ("star", "pink"),
                ("heart", "green"), ("diamond", "orange"), ("cross", "blue"), ("hexagon", "red"))

COLOR_RGB = {"red": (220, 30, 30), "green": (30, 175, 45), "blue": (35, 75, 235), "yellow": (250, 230, 20),
             "purple": (140, 50, 190), "orange": (245, 130, 15), "cyan": (30, 210, 220), "pink": (245, 120, 190)}
BACKGROUND_RGB = {"black": (0, 0, 0), "white": (255, 255, 255), "dark gray": (64, 64, 64),
                  "light gray": (192, 192, 192)}

# Layout, in fractions of the image side: the (column, row) of each position's cell in a 3x3 grid.
GRID_CELLS = {"left": (0, 1), "right": (2, 1), "top": (1, 0), "bottom": (1, 2), "center": (1, 1)}
POSITION_REGIONS = {p: (c / 3, r / 3, (c + 1) / 3, (r + 1) / 3) for p, (c, r) in GRID_CELLS.items()}
POSITION_CENTERS = {p: ((c + 0.5) / 3, (r + 0.5) / 3) for p, (c, r) in GRID_CELLS.items()}
CELL_PADDING = 0.012  # an object's box keeps this far inside its cell: >= 1.5 px between objects at 64 px
SIZE_RADIUS = {"small": 0.09, "large": 0.14}  # half-side of the unit shape's [-1, 1] square, at scale 1
SCALE_RANGE = (0.92, 1.08)
TINT = 10  # per-channel colour jitter, +-
SPLITS = ("train", "validation", "test", "unseen")
SPLIT_ALIASES = {"val": "validation"}
SPLIT_CODES = {"train": 0, "test": 1, "validation": 2, "unseen": 3}
DEFAULT_SIZES = {"train": 10_000, "validation": 1_000, "test": 1_000, "unseen": 1_000}


def is_unseen_pair(shape: str, color: str) -> bool:
    """Whether ``(shape, color)`` is one of the held-out ``UNSEEN_PAIRS``."""
    return (shape, color) in _UNSEEN


_UNSEEN = frozenset(UNSEEN_PAIRS)


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene; ``dx``, ``dy`` (offsets from the position's centre, fractions of
    the side), ``scale`` and ``tint`` (added to the RGB colour) are jitters that do not change
    the description."""

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

    @property
    def code(self) -> int:
        """The attribute combination as one number in ``[0, 640)``."""
        s, c, z, p = self.attributes
        return ((s * len(COLORS) + c) * len(SIZES) + z) * len(POSITIONS) + p

    @property
    def unseen_pair(self) -> bool:
        return is_unseen_pair(self.shape, self.color)


@dataclass(frozen=True)
class Scene:
    objects: tuple[ShapeObject, ...]
    background: str

    @property
    def class_id(self) -> int:
        """The description (objects, in any order; not the background) as one number: captions of
        scenes with the same class describe each other's images, whatever their background."""
        codes = sorted(o.code for o in self.objects)
        n = len(POSITIONS) * len(SIZES) * len(COLORS) * len(SHAPES)
        return codes[0] if len(codes) == 1 else n + codes[0] * n + codes[1]

    def same_description(self, other: Scene) -> bool:
        return [o.attributes for o in self.objects] == [o.attributes for o in other.objects] and \
            self.background == other.background


def _as_object(obj: ShapeObject | Mapping[str, Any]) -> ShapeObject:
    return obj if isinstance(obj, ShapeObject) else ShapeObject(**obj)


# --------------------------------------------------------------------------- geometry and rendering


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
# (x0, y0, x1, y1) of each unit shape (all inside [-1, 1]^2; the circle has radius 1)
SHAPE_EXTENTS = {"circle": (-1.0, -1.0, 1.0, 1.0),
                 **{k: (min(x for x, _ in v), min(y for _, y in v), max(x for x, _ in v), max(y for _, y in v))
                    for k, v in UNIT_POLYGONS.items()}}


def object_box(obj: ShapeObject) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)``: the bounding box of a drawn object, in fractions of the image side."""
    fx, fy = POSITION_CENTERS[obj.position]
    r = SIZE_RADIUS[obj.size] * obj.scale
    ex = SHAPE_EXTENTS[obj.shape]
    cx, cy = fx + obj.dx, fy + obj.dy
    return cx + r * ex[0], cy + r * ex[1], cx + r * ex[2], cy + r * ex[3]


def placement_range(shape: str, size: str, position: str, scale: float) -> tuple[float, float, float, float]:
    """``(dx_min, dy_min, dx_max, dy_max)``: the offsets that keep the object's box inside its cell
    (``CELL_PADDING`` in); empty (min > max) only for a scale beyond ``SCALE_RANGE``."""
    x0, y0, x1, y1 = POSITION_REGIONS[position]
    fx, fy = POSITION_CENTERS[position]
    r = SIZE_RADIUS[size] * scale
    ex = SHAPE_EXTENTS[shape]
    return (x0 + CELL_PADDING - r * ex[0] - fx, y0 + CELL_PADDING - r * ex[1] - fy,
            x1 - CELL_PADDING - r * ex[2] - fx, y1 - CELL_PADDING - r * ex[3] - fy)


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


def place_object(shape: str, color: str, size: str, position: str, rng: np.random.Generator) -> ShapeObject:
    """An object of this description with fresh jitter: scale uniform in ``SCALE_RANGE``,
    offsets uniform over its cell's room (:func:`placement_range`), tint uniform in +-``TINT``."""
    lo, hi = SCALE_RANGE
    u = rng.random(3)
    scale = lo + (hi - lo) * float(u[0])
    dx0, dy0, dx1, dy1 = placement_range(shape, size, position, scale)
    t = rng.integers(-TINT, TINT + 1, size=3)
    tint = (int(t[0]), int(t[1]), int(t[2]))
    return ShapeObject(shape, color, size, position, dx0 + (dx1 - dx0) * float(u[1]), dy0 + (dy1 - dy0) * float(u[2]),
                       scale, tint)


_ALL_VALUES = {"shape": SHAPES, "color": COLORS, "size": SIZES, "position": POSITIONS, "background": BACKGROUNDS}


def check_only(only: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    """Every attribute's allowed values (``only`` restricts some: ``{"color": ["red"]}``), each
    checked; an error names the attribute or value at fault."""
    allowed = dict(_ALL_VALUES)
    for name, values in (only or {}).items():
        if name not in _ALL_VALUES:
            raise ValueError(f"only: unknown attribute {name!r}; choose among {', '.join(_ALL_VALUES)}")
        values = (values,) if isinstance(values, str) else tuple(values)
        bad = [v for v in values if v not in _ALL_VALUES[name]]
        if bad or not values:
            raise ValueError(f"only.{name}: {bad[0] if bad else 'no value'!r} is not one of {', '.join(_ALL_VALUES[name])}")
        allowed[name] = tuple(v for v in _ALL_VALUES[name] if v in values)
    return allowed


def _draw_pair(rng: np.random.Generator, pairs: str, shapes: Sequence[str] = SHAPES,
               colors: Sequence[str] = COLORS) -> tuple[str, str]:
    """A (shape, colour) of ``shapes`` x ``colors``: ``any`` pair, a ``seen`` one (uniform shape, then
    uniform among its seen colours: every shape and colour equally likely) or an ``unseen`` one."""
    if pairs == "unseen":
        unseen = [p for p in UNSEEN_PAIRS if p[0] in shapes and p[1] in colors]
        if not unseen:
            raise ValueError("only: the allowed shapes and colours hold no held-out pair (the unseen split needs one)")
        return unseen[int(rng.integers(len(unseen)))]
    if pairs != "any":  # shapes whose every allowed colour is held out are not drawn
        shapes = [s for s in shapes if any(not is_unseen_pair(s, c) for c in colors)]
        if not shapes:
            raise ValueError("only: every allowed shape x colour pair is a held-out one")
    shape = shapes[int(rng.integers(len(shapes)))]
    allowed = colors if pairs == "any" else [c for c in colors if not is_unseen_pair(shape, c)]
    return shape, allowed[int(rng.integers(len(allowed)))]


def random_scene(rng: np.random.Generator, max_objects: int = 2, min_objects: int = 1,
                 two_object_fraction: float = 0.5, pairs: str = "any",
                 only: Mapping[str, Sequence[str]] | None = None) -> Scene:
    """A random scene (see the module doc) of ``min_objects``..``max_objects`` (1 or 2) objects.

    ``two_object_fraction``: chance of two objects when both counts are allowed. ``pairs``:
    ``"any"`` shape x colour pair, only ``"seen"`` ones (not in ``UNSEEN_PAIRS``), or
    ``"unseen"`` (exactly one object, chosen at random, has a held-out pair; the other a seen one).
    ``only``: allowed values of some attributes (``shape``, ``color``, ``size``, ``position``,
    ``background``), e.g. ``{"color": ["red"], "position": ["center"]}`` for a simpler data set;
    without it every value is drawn as always (the same scenes).
    """
    if not 1 <= min_objects <= max_objects <= 2:
        raise ValueError(f"objects per scene must satisfy 1 <= min <= max <= 2, got {min_objects}..{max_objects}")
    if not 0.0 <= two_object_fraction <= 1.0:
        raise ValueError(f"two_object_fraction must be in [0, 1], got {two_object_fraction}")
    if pairs not in ("any", "seen", "unseen"):
        raise ValueError(f"pairs must be 'any', 'seen' or 'unseen', got {pairs!r}")
    allowed = check_only(only)
    count = max_objects if min_objects == max_objects else 1 + int(rng.random() < two_object_fraction)
    if count > len(allowed["position"]):
        raise ValueError(f"only.position: {count} objects need {count} positions, {len(allowed['position'])} allowed")
    positions = rng.permutation(len(allowed["position"]))[:count]
    kinds = [pairs] * count
    if pairs == "unseen":
        kinds = ["seen"] * count
        kinds[int(rng.integers(count))] = "unseen"
    objects = []
    for position, kind in zip(positions, kinds):
        shape, color = _draw_pair(rng, kind, allowed["shape"], allowed["color"])
        size = allowed["size"][int(rng.integers(len(allowed["size"])))]
        objects.append(place_object(shape, color, size, allowed["position"][int(position)], rng))
    return Scene(tuple(objects), allowed["background"][int(rng.integers(len(allowed["background"])))])


def rejitter(scene: Scene, rng: np.random.Generator, keep_background: bool = True) -> Scene:
    """Another real scene of the same description: fresh jitter for every object; a random
    background unless ``keep_background``."""
    objects = tuple(place_object(o.shape, o.color, o.size, o.position, rng) for o in scene.objects)
    background = scene.background if keep_background else BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    return Scene(objects, background)


# --------------------------------------------------------------------------- captions


def caption_for(objects: Sequence[ShapeObject | Mapping[str, Any]], background: str, template_index: int,
                rng: np.random.Generator | None = None) -> str:
    """Caption ``template_index`` of ``templates_for(len(objects))`` for a scene; synonyms
    are drawn from ``rng`` (the first of each when None)."""
    objects = [_as_object(o) for o in objects]
    draws = first_synonyms(len(objects)) if rng is None else rng.random(len(first_synonyms(len(objects))))
    return format_caption(objects, background, template_index, draws)


def shapes_vocabulary() -> Vocabulary:
    """Every word any split's captions can produce: ``<end>`` then the words sorted."""
    words = {"an"}
    for template in ONE_OBJECT_TEMPLATES + TWO_OBJECT_TEMPLATES:
        words.update(tokenize(re.sub(r"\{\w+\}", " ", template)))
    phrases: list[str] = [*SHAPES, *COLORS]
    for table in (SIZE_WORDS, POSITION_PHRASES, BACKGROUND_WORDS):
        phrases += [p for ps in table.values() for p in ps]
    for phrase in phrases:
        words.update(tokenize(phrase))
    return Vocabulary([PAD_TOKEN, *sorted(words)])


# --------------------------------------------------------------------------- data set


def canonical_split(split: str) -> str:
    """``split`` or its alias resolved (``"val"`` -> ``"validation"``); an error names the choices."""
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


class ShapesDataset(Dataset):
    """Procedural captioned shapes (see the module doc).

    Args:
        split: ``"train"``, ``"validation"`` (``"val"``), ``"test"`` or ``"unseen"``.
        image_sizes: stage sizes, any up to 256, e.g. ``(64,)`` or ``(16, 32, 64)``.
        max_words: caption length cap; longer captions are subsampled in order (train)
            or cut (eval). No template exceeds 18 words.
        train: random caption choice (default ``split == "train"``).
        seed: scene ``index`` of a split is a function of ``(seed, split, index)``.
        size: number of images (default 10,000 train / 1,000 for the other splits).
        max_objects / min_objects: objects per scene (1 or 2; default 1..2).
        two_object_fraction: share of two-object scenes when both counts are allowed (0.5).
        captions_per_image: captions made for each image (10).
        vocab: defaults to ``shapes_vocabulary()``; unknown words of another are dropped.
        only: allowed values of some attributes (see :func:`random_scene`), for a simpler set
            (e.g. ``{"color": ["red"], "size": ["large"]}``); the vocabulary stays the same.
        skip_bad, missing, cache_dir: accepted for a uniform interface with the file-backed
            data sets; nothing can be bad or missing here, and drawing needs no cache.

    Items as :class:`~attngan.data.base.CaptionImageDataset`, with ``attributes`` =
    ``[shape, colour, size, position]`` per object slot (``-1`` for an absent second
    object) and ``class_id`` = :attr:`Scene.class_id` (the objects, in any order).
    """

    attribute_names = ("shape", "color", "size", "position")
    attribute_values = (SHAPES, COLORS, SIZES, POSITIONS)
    num_classes = 640 + 640 * 640

    def __init__(self, split: str = "train", image_sizes: Sequence[int] = (64,), max_words: int = 18,
                 train: bool | None = None, seed: int = 0, size: int | None = None, max_objects: int = 2,
                 min_objects: int = 1, two_object_fraction: float = 0.5, captions_per_image: int = 10,
                 vocab: Vocabulary | None = None, skip_bad: bool = False, missing: str = "error",
                 cache_dir: object = None, only: Mapping[str, Sequence[str]] | None = None) -> None:
        split = canonical_split(split)
        self.image_sizes = check_image_sizes(image_sizes)
        if self.image_sizes[-1] > 256:
            raise ValueError(f"shapes are drawn up to 256 px, got {self.image_sizes[-1]}")
        if max_words < 1 or seed < 0 or captions_per_image < 1:
            raise ValueError("max_words and captions_per_image must be >= 1 and seed >= 0")
        self.only = {k: list(v) for k, v in check_only(only).items() if only and k in only}
        random_scene(np.random.default_rng(0), max_objects, min_objects, two_object_fraction,  # validates
                     "unseen" if split == "unseen" else "seen", self.only)
        self.split, self.seed, self.max_words = split, int(seed), int(max_words)
        self.pairs = "unseen" if split == "unseen" else "seen"
        self.train = split == "train" if train is None else bool(train)
        self.size = int(size if size is not None else DEFAULT_SIZES[split])
        self.max_objects, self.min_objects = max_objects, min_objects
        self.two_object_fraction = float(two_object_fraction)
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

    def _rng(self, index: int, *stream: int) -> np.random.Generator:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} items")
        return np.random.default_rng([self.seed, SPLIT_CODES[self.split], index, *stream])

    def _scene_and_plan(self, index: int) -> tuple[Scene, list[tuple[int, np.ndarray]]]:
        rng = self._rng(index)
        scene = random_scene(rng, self.max_objects, self.min_objects, self.two_object_fraction, self.pairs, self.only)
        return scene, caption_plan(rng, self.split, len(scene.objects), self.captions_per_image)

    def variants(self, index: int, count: int, keep_background: bool = True) -> list[Scene]:
        """``count`` other real scenes with the description of scene ``index`` (fresh jitter, a
        random background unless ``keep_background``); a pure function of ``(seed, split, index)``."""
        scene = self.scene(index)
        return [rejitter(scene, self._rng(index, 1, k), keep_background) for k in range(count)]

    def class_ids(self) -> list[int]:
        """:attr:`Scene.class_id` of every image (no drawing)."""
        return [self.scene(i).class_id for i in range(self.size)]

    def captions(self, index: int) -> list[str]:
        """The ``captions_per_image`` caption texts of image ``index``."""
        scene, plan = self._scene_and_plan(index)
        return [format_caption(scene.objects, scene.background, t, c) for t, c in plan]

    def all_captions(self, index: int) -> list[list[int]]:
        """Token ids of every caption of image ``index`` (not truncated)."""
        return [self.vocab.encode_tokens(tokenize(text))[0] for text in self.captions(index)]

    def caption_text(self, index: int, caption_index: int) -> str:
        """Caption ``caption_index`` of image ``index`` (formats that one caption only: it is read
        once per training item when counterfactual captions are on)."""
        scene, plan = self._scene_and_plan(index)
        template, draws = plan[caption_index]
        return format_caption(scene.objects, scene.background, template, draws)

    def caption_with(self, index: int, caption_index: int, other: Scene) -> str:
        """Caption ``caption_index`` of image ``index`` (its template and synonyms) describing
        ``other`` instead of the image's own scene (as many objects): a counterfactual's caption."""
        scene, plan = self._scene_and_plan(index)
        if len(other.objects) != len(scene.objects):
            raise ValueError(f"image {index} has {len(scene.objects)} objects, got {len(other.objects)}")
        template, draws = plan[caption_index]
        return format_caption(other.objects, other.background, template, draws)

    def attributes(self, scene: Scene) -> list[int]:
        values = [a for obj in scene.objects for a in obj.attributes]
        return values + [-1] * (4 * self.max_objects - len(values))

    def render(self, scene: Scene) -> Image.Image:
        """A scene drawn at the largest stage size."""
        return render_shapes(scene.objects, scene.background, self.image_sizes[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += self.size
        scene, plan = self._scene_and_plan(index)
        rng = np.random.default_rng([self.seed, 4 + SPLIT_CODES[self.split], self.epoch, index]) \
            if self.train else None
        caption_index = int(rng.integers(len(plan))) if rng is not None else index % len(plan)
        template, draws = plan[caption_index]
        text = format_caption(scene.objects, scene.background, template, draws)
        ids = self.vocab.encode_tokens(tokenize(text))[0]
        if not ids:
            raise ValueError(f"no word of {text!r} is in the vocabulary given")
        if len(ids) > self.max_words:
            ids = subsample_ids(ids, self.max_words, rng) if rng is not None else ids[: self.max_words]
        tokens = np.zeros(self.max_words, np.int64)
        tokens[: len(ids)] = ids
        return {
            "images": stage_tensors(self.render(scene), self.image_sizes),
            "tokens": torch.from_numpy(tokens),
            "length": len(ids),
            "class_id": scene.class_id,
            "key": f"shapes-{self.split}-{index}",
            "caption_index": caption_index,
            "attributes": torch.from_numpy(np.array(self.attributes(scene), np.int64)),
        }
