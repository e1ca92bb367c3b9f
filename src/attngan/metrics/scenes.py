"""Per-object scores of shapes images: what a scene classifier sees against what the caption says.

The scene classifier is an :class:`~attngan.metrics.classifier.AttributeClassifier` whose
heads are slots (``SCENE_HEAD_NAMES``): a background head, and for each of the five
positions an occupancy head (object there or not) and shape / colour / size heads (trained
only where an object is: the target is -1 elsewhere). It is trained on real train scenes
only (:func:`scene_targets` gives its targets).

Scoring a caption's scene against an image (:func:`scene_hits`): an object of the caption
is at the right *position* when the classifier finds an object in that slot. Its shape,
colour and size are read in that slot or, when the slot is empty, in the most likely
occupied slot that no other object of the caption names (so a shape drawn in the wrong
place still counts for shape). The *count* is right when exactly as many slots are
occupied as the caption has objects. The *background* is scored only for captions that
name it (any background is right otherwise). :func:`summarise_scene_hits` reports, with
keys:

- one-object captions: ``one_{shape,color,size,position}``, ``one_objects`` (the four
  attributes), ``one_background``, ``one_count`` and ``one_all`` (the four attributes, the
  count and, when named, the background);
- two-object captions: ``two_first_*`` / ``two_second_*`` per object (first = named first),
  ``two_objects`` (every attribute of both objects), ``two_background``, ``two_count``,
  ``two_all``;
- two-object captions whose objects differ in shape (colour, size), what the two named cells
  show (:func:`place_pairing`): ``two_{shape,color,size}_own`` (each its own object's value) and
  ``_exchanged`` (each the other's: the objects drawn at each other's places);
- objects with a held-out shape x colour pair (the unseen split): ``heldout_*``;
- ``accuracy_all``: ``*_all`` over every caption; ``num_*``: how many captions / objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from ..data.shapes import (
    BACKGROUNDS,
    COLORS,
    POSITION_REGIONS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    ShapesDataset,
)
from ..errors import SettingError
from .classifier import AttributeClassifier

SLOT_FIELDS = ("occupied", "shape", "color", "size")
SCENE_HEAD_NAMES = ("background", *(f"{p}_{f}" for p in POSITIONS for f in SLOT_FIELDS))
SCENE_HEAD_VALUES = (len(BACKGROUNDS), *(v for _ in POSITIONS for v in (2, len(SHAPES), len(COLORS), len(SIZES))))
OBJECT_ATTRIBUTES = ("shape", "color", "size", "position")
SCENE_CELLS = tuple(POSITION_REGIONS[p] for p in POSITIONS)  # the slots' regions, in POSITIONS order


def scene_targets(scene: Scene) -> list[int]:
    """The scene classifier's targets ``[21]``: background, then per position occupied (0/1),
    shape, colour, size (-1 where the slot is empty)."""
    out = [BACKGROUNDS.index(scene.background)] + [0, -1, -1, -1] * len(POSITIONS)
    for obj in scene.objects:
        s, c, z, p = obj.attributes
        out[1 + 4 * p: 5 + 4 * p] = [1, s, c, z]
    return out


def is_scene_classifier(classifier: AttributeClassifier) -> bool:
    """Whether ``classifier`` has the slot heads of a scene classifier."""
    config = classifier.config
    return config.attribute_names == SCENE_HEAD_NAMES and config.num_values_per_attribute == SCENE_HEAD_VALUES


def require_scene_classifier(classifier: AttributeClassifier, field: str = "classifier") -> None:
    """A :class:`~attngan.errors.SettingError` naming the setting ``field`` unless ``classifier``
    is a scene classifier."""
    if not is_scene_classifier(classifier):
        names = ", ".join(classifier.config.attribute_names[:6])
        raise SettingError(field, f"the classifier predicts [{names}] and cannot score two-object shapes scenes; "
                                  "the shapes evaluation needs the slot scene classifier (retrain it with "
                                  "{train_classifier})")


@dataclass
class SceneHits:
    """Per-caption results of :func:`scene_hits` (B captions, object slots 0 and 1 in caption order).

    ``objects [B, 2, 4]`` bool: shape, colour, size, position right (False for an absent
    object); ``present [B, 2]``: the caption has object k; ``heldout [B, 2]``: object k has a
    held-out pair; ``background [B]``: background right; ``names_background [B]``: the
    caption names it; ``count [B]``: as many objects found as named; ``read [B, 2, 3]``: the
    shape, colour and size the classifier read for object k (-1 for an absent object);
    ``wanted [B, 2, 3]``: the shape, colour and size the caption gives object k (-1: absent).
    """

    objects: torch.Tensor
    present: torch.Tensor
    heldout: torch.Tensor
    background: torch.Tensor
    names_background: torch.Tensor
    count: torch.Tensor
    read: torch.Tensor
    wanted: torch.Tensor

    def __len__(self) -> int:
        return int(self.count.shape[0])

    @classmethod
    def cat(cls, parts: Sequence[SceneHits]) -> SceneHits:
        if not parts:
            raise ValueError("no scene hits to join")
        return cls(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def subset(self, mask: torch.Tensor) -> SceneHits:
        return SceneHits(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})


def _caption_tensors(scenes: Sequence[Scene]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``attributes [B, 2, 4]`` (-1 absent), ``present [B, 2]``, ``heldout [B, 2]``, ``background [B]``."""
    attributes = torch.full((len(scenes), 2, 4), -1, dtype=torch.int64)
    heldout = torch.zeros(len(scenes), 2, dtype=torch.bool)
    for b, scene in enumerate(scenes):
        if not 1 <= len(scene.objects) <= 2:
            raise ValueError(f"scene {b} has {len(scene.objects)} objects; captions describe 1 or 2")
        for k, obj in enumerate(scene.objects):
            attributes[b, k] = torch.tensor(obj.attributes)
            heldout[b, k] = obj.unseen_pair
    background = torch.tensor([BACKGROUNDS.index(s.background) for s in scenes], dtype=torch.int64)
    return attributes, attributes[..., 0] >= 0, heldout, background


@torch.no_grad()
def predict_scenes(classifier: AttributeClassifier, images: torch.Tensor, batch_size: int = 256
                   ) -> dict[str, torch.Tensor]:
    """The scene classifier's reading of ``images [N, 3, S, S]`` in [-1, 1]: ``background [N]``,
    ``occupancy [N, 5]`` (probability of an object per position), ``shape`` / ``color`` /
    ``size`` ``[N, 5]`` (value per position)."""
    require_scene_classifier(classifier)
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    parts: list[list[torch.Tensor]] = []
    try:
        for i in range(0, images.shape[0], batch_size):
            parts.append([lg.float().cpu() for lg in classifier(images[i:i + batch_size].to(device))])
    finally:
        classifier.train(was_training)
    if not parts:
        raise ValueError("no image to classify")
    logits = [torch.cat([p[h] for p in parts]) for h in range(len(SCENE_HEAD_NAMES))]
    slots = [logits[1 + 4 * p: 5 + 4 * p] for p in range(len(POSITIONS))]
    return {"background": logits[0].argmax(1),
            "occupancy": torch.stack([s[0].softmax(1)[:, 1] for s in slots], dim=1),
            **{name: torch.stack([s[f].argmax(1) for s in slots], dim=1)
               for f, name in enumerate(SLOT_FIELDS) if f > 0}}


def scene_hits(classifier: AttributeClassifier, images: torch.Tensor, scenes: Sequence[Scene],
               names_background: Sequence[bool] | torch.Tensor, batch_size: int = 256) -> SceneHits:
    """Score ``images [B, 3, S, S]`` against the scenes their captions describe (see the module doc)."""
    if images.shape[0] != len(scenes) or len(scenes) != len(names_background):
        raise ValueError(f"{images.shape[0]} images, {len(scenes)} scenes and {len(names_background)} "
                         "names_background flags: give one of each per caption")
    attributes, present, heldout, background = _caption_tensors(scenes)
    pred = predict_scenes(classifier, images, batch_size)
    occupied = pred["occupancy"] > 0.5
    rows = torch.arange(len(scenes))
    hits = torch.zeros(len(scenes), 2, 4, dtype=torch.bool)
    read = torch.full((len(scenes), 2, 3), -1, dtype=torch.int64)
    for k in range(2):
        position = attributes[:, k, 3].clamp(min=0)
        other = attributes[:, 1 - k, 3]
        score = pred["occupancy"].clone()
        has_other = other >= 0
        score[rows[has_other], other[has_other]] = -1.0  # never read another named object's slot
        slot = torch.where(occupied[rows, position], position, score.argmax(1))
        for a, name in enumerate(SLOT_FIELDS[1:]):
            read[:, k, a] = torch.where(present[:, k], pred[name][rows, slot], -1)
            hits[:, k, a] = read[:, k, a] == attributes[:, k, a]
        hits[:, k, 3] = occupied[rows, position]
        hits[:, k] &= present[:, k, None]
    return SceneHits(objects=hits, present=present, heldout=heldout & present,
                     background=pred["background"] == background,
                     names_background=torch.as_tensor(list(names_background), dtype=torch.bool).reshape(-1),
                     count=occupied.sum(1) == present.sum(1), read=read, wanted=attributes[..., :3].clone())


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean())


PAIRINGS = ("own", "exchanged", "first", "second", "other")


def place_pairing(hits: SceneHits) -> dict[str, dict[str, float | int]]:
    """Two-object captions whose objects differ in an attribute (shape, color, size): the share
    whose two cells show ``own`` (each its own object's value), ``exchanged`` (each the other's),
    ``first`` / ``second`` (both the first / second object's value) or ``other`` (a value the
    caption does not name, or nothing read); ``n``: how many captions. Attributes no such caption
    has are left out."""
    out: dict[str, dict[str, float | int]] = {}
    two = hits.present[:, 1]
    for a, attribute in enumerate(OBJECT_ATTRIBUTES[:3]):
        wanted, read = hits.wanted[two, :, a], hits.read[two, :, a]
        differ = wanted[:, 0] != wanted[:, 1]
        if not differ.any():
            continue
        w, r = wanted[differ], read[differ]
        cases = {"own": (r[:, 0] == w[:, 0]) & (r[:, 1] == w[:, 1]),
                 "exchanged": (r[:, 0] == w[:, 1]) & (r[:, 1] == w[:, 0]),
                 "first": (r[:, 0] == w[:, 0]) & (r[:, 1] == w[:, 0]),
                 "second": (r[:, 0] == w[:, 1]) & (r[:, 1] == w[:, 1])}
        named = cases["own"] | cases["exchanged"] | cases["first"] | cases["second"]
        out[attribute] = {"n": int(differ.sum()), **{k: _mean(v) for k, v in cases.items()}, "other": _mean(~named)}
    return out


def summarise_scene_hits(hits: SceneHits) -> dict[str, float | int]:
    """The figures of the module doc from :class:`SceneHits` (rows without captions are left out)."""
    if len(hits) == 0:
        raise ValueError("no scored caption")
    out: dict[str, float | int] = {}
    objects_all = hits.objects.all(dim=2) | ~hits.present  # [B, 2]
    scene_all = objects_all.all(dim=1) & hits.count & (hits.background | ~hits.names_background)
    two = hits.present[:, 1]
    for prefix, mask, slots in (("one", ~two, {"": 0}), ("two", two, {"first_": 0, "second_": 1})):
        if not mask.any():
            continue
        part = hits.subset(mask)
        for name, k in slots.items():
            for a, attribute in enumerate(OBJECT_ATTRIBUTES):
                out[f"{prefix}_{name}{attribute}"] = _mean(part.objects[:, k, a])
            out[f"{prefix}_{name}objects"] = _mean(part.objects[:, k].all(dim=1))
        if prefix == "two":
            out["two_objects"] = _mean(objects_all[mask].all(dim=1))
        named = part.names_background
        if named.any():
            out[f"{prefix}_background"] = _mean(part.background[named])
        out[f"{prefix}_count"] = _mean(part.count)
        out[f"{prefix}_all"] = _mean(scene_all[mask])
        out[f"num_{prefix}"] = int(mask.sum())
        out[f"num_{prefix}_background"] = int(named.sum())
    for attribute, row in place_pairing(hits).items():
        out[f"two_{attribute}_own"] = row["own"]
        out[f"two_{attribute}_exchanged"] = row["exchanged"]
    held = hits.heldout
    if held.any():
        chosen = hits.objects[held]  # [M, 4]
        for a, attribute in enumerate(OBJECT_ATTRIBUTES):
            out[f"heldout_{attribute}"] = _mean(chosen[:, a])
        out["heldout_objects"] = _mean(chosen.all(dim=1))
        out["num_heldout"] = int(held.sum())
    out["accuracy_all"] = _mean(scene_all)
    return out


def scene_accuracy_result(classifier: AttributeClassifier, hits: SceneHits, real: SceneHits | None = None
                          ) -> dict[str, Any]:
    """A metric result (``values``, ``label``, ``feature_extractor``, ``num_samples``) of generated
    images' :class:`SceneHits`, with the ``real_*`` ceilings of the real images' hits when given."""
    values: dict[str, Any] = summarise_scene_hits(hits)
    if real is not None:
        values.update({f"real_{k}": v for k, v in summarise_scene_hits(real).items()})
    return {"values": values,
            "label": "per-object accuracy of generated images (slot scene classifier trained on real train scenes; "
                     "real_*: the real images of the captions, the ceiling)",
            "feature_extractor": f"scene classifier {classifier.config.arch} over {len(POSITIONS)} positions",
            "num_samples": len(hits)}


def scene_confusions(hits: SceneHits) -> dict[str, tuple[torch.Tensor, list[str], list[str]]]:
    """Per object attribute (shape, colour, size): counts ``[V, V + 1]`` of (what the caption
    says, what the classifier read; the last column: no object read) over every object of
    every caption, with the row and column labels."""
    from .classifier import confusion_counts

    out = {}
    for a, (name, values) in enumerate((("shape", SHAPES), ("colour", COLORS), ("size", SIZES))):
        counts = confusion_counts(hits.wanted[..., a][hits.present], hits.read[..., a][hits.present], len(values))
        out[name] = (counts, list(values), [*values, "none"])
    return out


_COLUMNS = (("shape", "shape"), ("color", "colour"), ("size", "size"), ("position", "place"),
            ("objects", "objects"), ("background", "backgr"), ("count", "count"), ("all", "all"))
_ROWS = (("one_", "one object", "num_one"), ("two_first_", "two objects: 1st", "num_two"),
         ("two_second_", "two objects: 2nd", "num_two"), ("two_", "two objects: both", "num_two"),
         ("heldout_", "held-out pairs", "num_heldout"), ("accuracy_", "every caption", ""))
_SKIP = {"two_first_": ("background", "count", "all"), "two_second_": ("background", "count", "all"),
         "two_": ("shape", "color", "size", "position"), "accuracy_": tuple(k for k, _ in _COLUMNS[:-1])}


def scene_table(values: dict[str, Any]) -> list[str]:
    """Lines of a table of :func:`summarise_scene_hits` figures: per kind of caption a line of
    generated figures and, where ``values`` holds the ``real_`` ceilings, a line of them; ``n``
    counts captions (objects for held-out pairs)."""
    lines = [f"{'':22s} {'n':>5s}" + "".join(f" {label:>7s}" for _, label in _COLUMNS)]
    for prefix, label, count in _ROWS:
        keys = ["" if key in _SKIP.get(prefix, ()) else prefix + key for key, _ in _COLUMNS]
        if not any(k in values for k in keys):
            continue
        n = values.get(count) if count else values.get("num_one", 0) + values.get("num_two", 0)
        for source, tag, size in (("", "gen", f"{n:5d}"), ("real_", "real", "")):
            cells = [values.get(source + k) if k else None for k in keys]
            if source and all(c is None for c in cells):
                continue
            text = "".join(f" {'' if c is None else f'{c:.3f}':>7s}" for c in cells)
            lines.append(f"{label if not source else '':17s} {tag:4s} {size:>5s}{text}".rstrip())
    return lines


def scene_training_data(count: int, image_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The scene classifier's training set: the first ``count`` REAL train scenes as uint8
    images ``[count, 3, S, S]`` and :func:`scene_targets` ``[count, 21]``."""
    dataset = ShapesDataset("train", image_sizes=(image_size,), size=count, train=False)
    images = torch.empty(count, 3, image_size, image_size, dtype=torch.uint8)
    targets = torch.empty(count, len(SCENE_HEAD_NAMES), dtype=torch.int64)
    for i in range(count):
        scene = dataset.scene(i)
        images[i] = torch.from_numpy(np.array(dataset.render(scene))).permute(2, 0, 1)
        targets[i] = torch.tensor(scene_targets(scene))
    return images, targets
