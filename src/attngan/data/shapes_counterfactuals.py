"""Counterfactual scenes of the shapes data set: the scene with exactly one thing changed, so
that its caption (same template, same synonyms) is a true negative of the real image.

Kinds of change (``COUNTERFACTUAL_KINDS``):

- ``shape``, ``color``, ``size``: one object's attribute replaced by another value;
- ``position``: one object moved to a cell no object occupies (a moved object never lands on
  the other one's cell);
- ``exchange``: two objects of a two-object scene exchange their shapes, colours or sizes
  (only those that differ, so the description really changes).

A counterfactual never names one of the held-out shape x colour pairs (``UNSEEN_PAIRS``), so
training on counterfactuals leaves the unseen split unseen. The background is never changed:
it is named by only half of the captions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from .shapes import COLORS, POSITIONS, SHAPES, SIZES, Scene, ShapeObject, is_unseen_pair

COUNTERFACTUAL_KINDS = ("shape", "color", "size", "position", "exchange")
# shape is the hardest word to see: half of the counterfactuals change it (a DAMSM probe on the
# validation split: the right shape word ranked first 0.51 -> 0.73 at 3,000 steps with this mix)
DEFAULT_KIND_WEIGHTS: Mapping[str, float] = {"shape": 4.0, "color": 1.0, "size": 1.0, "position": 1.0,
                                             "exchange": 1.0}
_VALUES = {"shape": SHAPES, "color": COLORS, "size": SIZES, "position": POSITIONS}


def _allowed(objects: tuple[ShapeObject, ...]) -> bool:
    return not any(is_unseen_pair(o.shape, o.color) for o in objects)


def all_counterfactuals(scene: Scene, kind: str) -> list[tuple[ShapeObject, ...]]:
    """Every object tuple that differs from ``scene``'s by one change of ``kind`` and names no
    held-out pair (objects in scene order; jitter kept, so the objects are only descriptions)."""
    objects = scene.objects
    out: list[tuple[ShapeObject, ...]] = []
    if kind == "exchange":
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
    return [o for o in out if _allowed(o)]


def sample_counterfactuals(scene: Scene, count: int, rng: np.random.Generator,
                           weights: Mapping[str, float] = DEFAULT_KIND_WEIGHTS) -> list[tuple[ShapeObject, ...]]:
    """``count`` distinct counterfactual object tuples of ``scene`` (fewer only when the scene has
    fewer): a kind drawn by ``weights`` among the kinds with a change left, then one of its changes."""
    for kind in weights:
        if kind not in COUNTERFACTUAL_KINDS:
            raise ValueError(f"unknown counterfactual kind {kind!r}; choose among {', '.join(COUNTERFACTUAL_KINDS)}")
    pools = {kind: all_counterfactuals(scene, kind) for kind in COUNTERFACTUAL_KINDS if weights.get(kind, 0) > 0}
    out: list[tuple[ShapeObject, ...]] = []
    while len(out) < count:
        kinds = [k for k, pool in pools.items() if pool]
        if not kinds:
            break
        p = np.array([weights[k] for k in kinds], dtype=np.float64)
        kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
        pool = pools[kind]
        out.append(pool.pop(int(rng.integers(len(pool)))))
    return out
