"""Counterfactual scenes of the shapes data set: the scene with exactly one thing changed, so
that its caption (same template, same synonyms) is a true negative of the real image.

Kinds of change (``COUNTERFACTUAL_KINDS``):

- ``shape``, ``color``, ``size``: one object's attribute replaced by another value;
- ``position``: one object moved to a cell no object occupies (a moved object never lands on
  the other one's cell);
- ``exchange``: two objects of a two-object scene exchange their shapes, colours or sizes
  (only those that differ, so the description really changes);
- ``background``: another background, only for a caption that names the background (about half
  of them; for the others a changed background describes the same image);
- ``swap``: the two objects of a two-object scene exchange their places, each keeping its shape,
  colour and size (the caption names the first object at the second one's place): the error of a
  generator that draws the right objects at each other's places. Not in the default mix (weight 0).

A counterfactual never names one of the held-out shape x colour pairs (``UNSEEN_PAIRS``), so
training on counterfactuals leaves the unseen split unseen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from .shapes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, Scene, ShapeObject, is_unseen_pair

COUNTERFACTUAL_KINDS = ("shape", "color", "size", "position", "exchange", "background", "swap")
# shape is the hardest word to see: half of the counterfactuals change it (a DAMSM probe on the
# validation split: the right shape word ranked first 0.51 -> 0.73 at 3,000 steps with this mix)
# background joined after a 6,000-step GAN probe drew the named background 0.21 of the time
DEFAULT_KIND_WEIGHTS: Mapping[str, float] = {"shape": 4.0, "color": 1.0, "size": 1.0, "position": 1.0,
                                             "exchange": 1.0, "background": 1.0, "swap": 0.0}
_VALUES = {"shape": SHAPES, "color": COLORS, "size": SIZES, "position": POSITIONS}


def _allowed(objects: tuple[ShapeObject, ...]) -> bool:
    return not any(is_unseen_pair(o.shape, o.color) for o in objects)


def all_counterfactuals(scene: Scene, kind: str, names_background: bool = False) -> list[Scene]:
    """Every scene that differs from ``scene`` by one change of ``kind`` and names no held-out
    pair (objects in scene order; jitter kept, so the objects are only descriptions). A
    ``background`` change exists only for a caption that ``names_background``."""
    objects = scene.objects
    out: list[tuple[ShapeObject, ...]] = []
    if kind == "background":
        return [Scene(objects, b) for b in BACKGROUNDS if names_background and b != scene.background]
    if kind == "swap":
        if len(objects) == 2:
            a, b = objects
            if (a.shape, a.color, a.size) != (b.shape, b.color, b.size):  # else the same description
                out.append((dataclasses.replace(a, position=b.position), dataclasses.replace(b, position=a.position)))
    elif kind == "exchange":
        if len(objects) == 2:
            a, b = objects
            for attribute in ("shape", "color", "size"):
                if getattr(a, attribute) != getattr(b, attribute):
                    out.append((dataclasses.replace(a, **{attribute: getattr(b, attribute)}),
                                dataclasses.replace(b, **{attribute: getattr(a, attribute)})))
    elif kind in _VALUES:
        taken = {o.position for o in objects}
        for k, obj in enumerate(objects):
            for value in _VALUES[kind]:
                if value == getattr(obj, kind) or (kind == "position" and value in taken):
                    continue
                changed = list(objects)
                field: dict[str, Any] = {kind: value}
                changed[k] = dataclasses.replace(obj, **field)
                out.append(tuple(changed))
    else:
        raise ValueError(f"unknown counterfactual kind {kind!r}; choose one of {', '.join(COUNTERFACTUAL_KINDS)}")
    return [Scene(o, scene.background) for o in out if _allowed(o)]


def sample_counterfactuals(scene: Scene, count: int, rng: np.random.Generator,
                           weights: Mapping[str, float] = DEFAULT_KIND_WEIGHTS,
                           names_background: bool = False) -> list[Scene]:
    """``count`` distinct counterfactual scenes of ``scene`` (fewer only when the scene has
    fewer): a kind drawn by ``weights`` among the kinds with a change left, then one of its changes.
    ``names_background``: the caption names the background (else it is never changed)."""
    for kind in weights:
        if kind not in COUNTERFACTUAL_KINDS:
            raise ValueError(f"unknown counterfactual kind {kind!r}; choose among {', '.join(COUNTERFACTUAL_KINDS)}")
    pools = {kind: all_counterfactuals(scene, kind, names_background) for kind in COUNTERFACTUAL_KINDS if weights.get(kind, 0) > 0}
    out: list[Scene] = []
    while len(out) < count:
        kinds = [k for k, pool in pools.items() if pool]
        if not kinds:
            break
        p = np.array([weights[k] for k in kinds], dtype=np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        pool = pools[kind]
        out.append(pool.pop(int(rng.integers(len(pool)))))
    return out
