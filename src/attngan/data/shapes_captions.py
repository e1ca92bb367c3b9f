"""Captions of the shapes data set: templates, synonyms, the caption plan of an image and
the vocabulary (see :mod:`attngan.data.shapes` for the scenes).

Words: colour and shape names verbatim; sizes through ``SIZE_WORDS`` ("small", "tiny",
"little" / "large", "big"); positions through ``POSITION_PHRASES`` ("on the left", "in the
middle", "in the centre", ...); backgrounds through ``BACKGROUND_WORDS`` ("dark gray" or
"dark grey", ...). Objects are always named in scene order (object 0 first). About half of
the training templates name the background; the word ``background`` appears in a caption
exactly when it names one (:func:`names_background`).

The last templates of each list (``HELD_OUT_TEMPLATES`` of them) are held-out phrasings:
the evaluation splits (validation, test, unseen) use every one of them first, the train
split never does. They are made of words the training templates use too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..text import tokenize

SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big")}
POSITION_PHRASES = {
    "left": ("on the left", "at the left", "to the left"),
    "right": ("on the right", "at the right", "to the right"),
    "top": ("at the top", "on the top", "near the top"),
    "bottom": ("at the bottom", "on the bottom", "near the bottom"),
    "center": ("in the center", "in the centre", "in the middle", "at the center", "at the centre"),
}
BACKGROUND_WORDS = {"black": ("black",), "white": ("white",), "dark gray": ("dark gray", "dark grey"),
                    "light gray": ("light gray", "light grey")}

ONE_OBJECT_TEMPLATES = (
    "a {size} {color} {shape} {pos}",
    "there is a {size} {color} {shape} {pos}",
    "a {size} {color} {shape} {pos} on a {bg} background",
    "this image shows a {size} {color} {shape} {pos}",
    "a {color} {shape} {pos}, it is {size}",
    "{pos} there is a {size} {color} {shape}",
    "a {size} {shape} in {color} {pos}",
    "the picture has one {size} {color} {shape} {pos} on a {bg} background",
    "a {bg} background with a {size} {color} {shape} {pos}",
    "one {size} {color} {shape} placed {pos}",
    "a {size} {color} {shape} is {pos} against a {bg} background",
    "a {color} {shape}, {size}, {pos} on a {bg} background",
    "on a {bg} background there is a {size} {color} {shape} {pos}",
    # held-out phrasings (evaluation splits only)
    "{pos} is a {size} {color} {shape}",
    "there is one {size} {shape} in {color} {pos}",
    "the {color} {shape} {pos} is {size}, the background is {bg}",
    "a {size} {color} {shape} placed {pos} on a {bg} background",
)
TWO_OBJECT_TEMPLATES = (
    "a {size0} {color0} {shape0} {pos0} and a {size1} {color1} {shape1} {pos1}",
    "there is a {size0} {color0} {shape0} {pos0} and a {size1} {color1} {shape1} {pos1}",
    "{pos0} a {size0} {color0} {shape0} and {pos1} a {size1} {color1} {shape1}",
    "a {size0} {color0} {shape0} {pos0}, a {size1} {color1} {shape1} {pos1}, {bg} background",
    "{size0} {color0} {shape0} {pos0} and {size1} {color1} {shape1} {pos1} on a {bg} background",
    "one {size0} {color0} {shape0} {pos0} and one {size1} {color1} {shape1} {pos1}",
    "a {size0} {color0} {shape0} is {pos0} and a {size1} {color1} {shape1} is {pos1}",
    "{bg} background, a {size0} {color0} {shape0} {pos0} and a {size1} {color1} {shape1} {pos1}",
    "two shapes, a {size0} {color0} {shape0} {pos0} and a {size1} {color1} {shape1} {pos1}",
    "{size0} {color0} {shape0} {pos0}, {size1} {color1} {shape1} {pos1}, {bg} background",
    # held-out phrasings (evaluation splits only)
    "{pos0} is a {size0} {color0} {shape0} and {pos1} is a {size1} {color1} {shape1}",
    "there is one {size0} {color0} {shape0} {pos0} and one {size1} {color1} {shape1} {pos1}",
    "{size0} {color0} {shape0} {pos0} and {size1} {color1} {shape1} {pos1}, {bg} background",
)
HELD_OUT_TEMPLATES = {1: 4, 2: 3}  # how many trailing templates only the evaluation splits use
_DRAWS_PER_OBJECT = 2  # size word, position phrase


def templates_for(num_objects: int) -> tuple[str, ...]:
    """The caption templates of scenes of ``num_objects`` (1 or 2) objects."""
    if num_objects not in (1, 2):
        raise ValueError(f"captions exist for 1 or 2 objects, got {num_objects}")
    return ONE_OBJECT_TEMPLATES if num_objects == 1 else TWO_OBJECT_TEMPLATES


def _pick(options: Sequence[str], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def format_caption(objects: Sequence[Any], background: str, template_index: int, draws: np.ndarray) -> str:
    """Caption ``template_index`` of a scene; ``objects`` have ``shape``, ``color``, ``size`` and
    ``position``; ``draws`` (``[len(objects) * 2 + 1]`` floats in [0, 1)) pick the synonyms."""
    fields = {"bg": _pick(BACKGROUND_WORDS[background], float(draws[-1]))}
    for k, obj in enumerate(objects):
        suffix = "" if len(objects) == 1 else str(k)
        fields.update({f"size{suffix}": _pick(SIZE_WORDS[obj.size], float(draws[2 * k])),
                       f"color{suffix}": obj.color, f"shape{suffix}": obj.shape,
                       f"pos{suffix}": _pick(POSITION_PHRASES[obj.position], float(draws[2 * k + 1]))})
    text = templates_for(len(objects))[template_index].format(**fields)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def first_synonyms(num_objects: int) -> np.ndarray:
    """Draws that pick the first synonym of every word (``format_caption``'s ``draws``)."""
    return np.zeros(num_objects * _DRAWS_PER_OBJECT + 1)


def caption_plan(rng: np.random.Generator, evaluation: bool | str, num_objects: int, count: int
                 ) -> list[tuple[int, np.ndarray]]:
    """Templates and synonym draws of an image's ``count`` captions.

    ``evaluation`` (or a split name: anything but ``"train"`` counts as evaluation) puts
    every held-out template first, in a random order; training plans never use them.
    """
    if isinstance(evaluation, str):
        evaluation = evaluation != "train"
    n = len(templates_for(num_objects))
    n_train = n - HELD_OUT_TEMPLATES[num_objects]
    per_caption = num_objects * _DRAWS_PER_OBJECT + 1
    u = rng.random(n_train + count + count * per_caption)
    order = [int(t) for t in np.argsort(u[:n_train], kind="stable")]
    chosen = list(range(n_train, n)) if evaluation else []
    while len(chosen) < count:
        chosen += order
    chosen = chosen[:count]
    if evaluation:
        chosen = [chosen[k] for k in np.argsort(u[n_train:n_train + count], kind="stable")]
    draws = u[n_train + count:].reshape(count, per_caption)
    return [(t, draws[k]) for k, t in enumerate(chosen)]


def names_background(caption: str) -> bool:
    """Whether a shapes caption names the background: every template that does says ``background``."""
    return "background" in tokenize(caption)
