"""The data side of ``attngan evaluate``: which captions are generated from, their real
images, the distractor caption pool, and attribute classifiers trained per data set.

Sample ``k`` of an evaluation uses image ``k % n`` of the split (``n`` images) and, on the
first pass over the split, that image's own evaluation caption; later passes take the
image's next captions in turn. Only the first pass contributes real images (each real
image counted once). Captions are encoded with the *model's* vocabulary and cut to its
``max_words``, exactly as the model reads them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..text import Vocabulary, pad_batch
from .classifier import AttributeClassifier, load_classifier, save_classifier, train_attribute_classifier
from .fid import default_cache_dir
from .r_precision import CaptionPool

logger = logging.getLogger(__name__)

DATA_KINDS = ("shapes", "cub", "coco", "folder", "tags")
CLASSIFIER_IMAGE_SIZE = 64
# Training recipes of the attribute classifiers (part of their cache key). Shapes: the slot
# scene classifier (metrics/scenes.py) on 8,000 real train scenes at 64 px, 5 epochs, cosine
# schedule; 140 s on one thread of a quiet 2-core EPYC (up to 4 minutes on a busy one); every
# score of 1,000 real test / unseen images >= 0.99. Tags: 8,000 anime faces, 6 epochs; hair
# 0.93 / eye 0.91 / both 0.84 on the real test split (noisy tags).
CLASSIFIER_RECIPES: dict[str, dict[str, Any]] = {
    "shapes": {"targets": "scene-slots", "arch": "slots", "train_images": 8000, "channels": 8, "feature_dim": 32,
               "mask_low": 0.2, "mask_high": 0.5, "epochs": 5, "batch_size": 64, "lr": 2e-3, "lr_schedule": "cosine"},
    "tags": {"train_images": 8000, "channels": 8, "feature_dim": 64, "epochs": 6, "batch_size": 64,
             "lr": 2e-3, "lr_schedule": "cosine"},
}
_DATA_KEYS = ("targets", "train_images")  # recipe entries that choose the data, not the training


@dataclass(frozen=True)
class DataSpec:
    """Which data an evaluation reads: ``kind`` (``DATA_KINDS``), ``root`` (None for shapes), ``split``."""

    kind: str = "shapes"
    root: str | None = None
    split: str = "test"

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"--data: unknown data set {self.kind!r}; choose one of {', '.join(DATA_KINDS)}")
        if self.kind == "shapes" and self.root is not None:
            raise ValueError("--data-root: the shapes data set is procedural and takes no root folder")
        if self.kind != "shapes" and self.root is None:
            raise ValueError(f"--data-root: the {self.kind} data set needs its root folder")

    def describe(self, image_size: int | None = None) -> dict[str, Any]:
        """JSON-ready description (with the resolved root) for records and cache keys."""
        out: dict[str, Any] = {"name": self.kind, "split": self.split}
        if self.root is not None:
            out["root"] = str(Path(self.root).expanduser().resolve())
        if image_size is not None:
            out["image_size"] = image_size
        return out


def build_split(spec: DataSpec, split: str, image_size: int, vocab: Vocabulary | None = None,
                max_words: int = 18, **extra: Any) -> Any:
    """The ``split`` of ``spec``'s data set at ``image_size`` px, evaluation mode (centre crops,
    fixed captions). ``vocab`` None keeps the data set's own vocabulary; ``extra``: further
    data set arguments (e.g. the shapes data ``seed``)."""
    from ..data import DataError, build_dataset

    kwargs: dict[str, Any] = {"split": split, "image_sizes": (image_size,), "max_words": max_words,
                              "train": False, "skip_bad": True, **extra}
    if vocab is not None:
        kwargs["vocab"] = vocab
    try:
        return build_dataset(spec.kind, spec.root, **kwargs)
    except (DataError, FileNotFoundError) as exc:
        raise ValueError(f"--data {spec.kind} --data-root {spec.root}: {exc}") from None


def _class_ids(dataset: Any) -> list[int]:
    """Class id of every image, without decoding images where the data set allows it
    (file-backed sets keep them in ``records``; procedural ones give ``class_ids()``)."""
    records = getattr(dataset, "records", None)
    if records is not None:
        return [int(r.class_id) for r in records]
    if callable(getattr(dataset, "class_ids", None)):
        return [int(c) for c in dataset.class_ids()]
    return [int(dataset[i]["class_id"]) for i in range(len(dataset))]


class EvalSamples:
    """The caption plan of an evaluation: ``num_samples`` samples over ``dataset`` (see the module doc)."""

    def __init__(self, dataset: Any, num_samples: int, max_words: int) -> None:
        if len(dataset) == 0:
            raise ValueError("the evaluation split has no image")
        if num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {num_samples}")
        self.dataset, self.num_samples, self.max_words = dataset, int(num_samples), int(max_words)
        self.has_attributes = bool(getattr(dataset, "attribute_names", ()))
        self.has_scenes = callable(getattr(dataset, "scene", None))  # the shapes data set

    @property
    def num_real(self) -> int:
        """Distinct real images the samples cover (the first pass over the split)."""
        return min(self.num_samples, len(self.dataset))

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """Samples ``indices``: ``tokens [B, T]``, ``lengths [B]``, ``class_ids [B]``, ``keys``,
        ``texts``, ``real [B, 3, S, S]`` (the captions' images), ``first_pass [B]`` bool and,
        when the data set has them, ``attributes [B, K]``; for shapes also ``scenes`` (the
        captions' :class:`~attngan.data.shapes.Scene`), ``names_background [B]`` bool and
        ``caption_texts`` (the captions as written, before the model's vocabulary)."""
        n = len(self.dataset)
        ids_list, items, raw = [], [], []
        for k in indices:
            item = self.dataset[k % n]
            ids = item["tokens"][: int(item["length"])].tolist()
            choice = int(item["caption_index"])
            if k >= n:
                usable = [j for j, c in enumerate(self.dataset.all_captions(k % n)) if c]
                choice = usable[(choice + k // n) % len(usable)]
                ids = self.dataset.all_captions(k % n)[choice]
            ids_list.append(list(ids)[: self.max_words])
            items.append(item)
            if self.has_scenes:
                raw.append(self.dataset.caption_text(k % n, choice))
        tokens, lengths = pad_batch(ids_list)
        vocab = self.dataset.vocab
        out: dict[str, Any] = {
            "indices": torch.tensor(list(indices), dtype=torch.int64),
            "tokens": tokens, "lengths": lengths,
            "class_ids": torch.tensor([int(it["class_id"]) for it in items], dtype=torch.int64),
            "keys": [str(it["key"]) for it in items],
            "texts": [" ".join(vocab.decode(ids)) for ids in ids_list],
            "real": torch.stack([it["images"][-1] for it in items]).float(),
            "first_pass": torch.tensor([k < n for k in indices]),
        }
        if self.has_attributes and "attributes" in items[0]:
            out["attributes"] = torch.stack([torch.as_tensor(it["attributes"]) for it in items]).to(torch.int64)
        if self.has_scenes:
            from ..data.shapes_captions import names_background

            out["scenes"] = [self.dataset.scene(k % n) for k in indices]
            out["names_background"] = torch.tensor([names_background(text) for text in raw], dtype=torch.bool)
            out["caption_texts"] = raw
        return out

    def caption_pool(self) -> CaptionPool:
        """Every caption of the split (cut to ``max_words``) with its image's class id: the distractors."""
        captions, classes = [], []
        for i, class_id in enumerate(_class_ids(self.dataset)):
            for ids in self.dataset.all_captions(i):
                if ids:
                    captions.append(ids[: self.max_words])
                    classes.append(class_id)
        if not captions:
            raise ValueError("the evaluation split has no usable caption for R-precision")
        return CaptionPool.from_captions(captions, classes, self.max_words)


def real_batches(dataset: Any, count: int, batch_size: int, start: int = 0, stop: int | None = None
                 ) -> list[tuple[int, int]]:
    """Index ranges ``[(a, b), ...]`` of batches covering items ``start .. min(stop, count)``."""
    end = min(count, len(dataset)) if stop is None else min(stop, count, len(dataset))
    return [(a, min(a + batch_size, end)) for a in range(start, end, batch_size)]


# --------------------------------------------------------------------------- attribute classifiers


def classifier_recipe(kind: str) -> dict[str, Any]:
    """Training settings of the attribute classifier of a data set kind (shapes, tags)."""
    if kind not in CLASSIFIER_RECIPES:
        raise ValueError(f"--data {kind} has no attributes: attribute accuracy needs shapes or tags")
    return dict(CLASSIFIER_RECIPES[kind])


def classifier_cache_dir(spec: DataSpec, recipe: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """``<cache>/classifiers/<kind>-<key>``: key = hash of the data settings, recipe and seed."""
    recipe = recipe or classifier_recipe(spec.kind)
    payload = {"data": {**spec.describe(CLASSIFIER_IMAGE_SIZE), "split": "train"}, "recipe": recipe, "seed": seed}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return default_cache_dir().parent / "classifiers" / f"{spec.kind}-{key}"


class _Stacked(torch.utils.data.Dataset):
    """Pre-decoded images (uint8 ``[N, 3, S, S]``) and attributes ``[N, K]`` for fast epochs."""

    def __init__(self, images: torch.Tensor, attributes: torch.Tensor, names: Sequence[str],
                 values: Sequence[int]) -> None:
        self.images, self.attributes = images, attributes
        self.attribute_names, self.num_values_per_attribute = tuple(names), tuple(values)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"images": self.images[i].float() / 127.5 - 1.0, "attributes": self.attributes[i]}


def train_data_classifier(spec: DataSpec, seed: int = 0, recipe: dict[str, Any] | None = None,
                          device: str | torch.device = "cpu") -> AttributeClassifier:
    """Train the attribute classifier of ``spec``'s data set on REAL images of its train split
    (for shapes: the slot scene classifier of :mod:`attngan.metrics.scenes`).

    Images are decoded once at ``CLASSIFIER_IMAGE_SIZE`` px (no augmentation: flips and
    crops would contradict position words). ``metadata`` records the data and recipe.
    """
    recipe = recipe or classifier_recipe(spec.kind)
    train_spec = DataSpec(spec.kind, spec.root, "train")
    settings = {k: v for k, v in recipe.items() if k not in _DATA_KEYS}
    if spec.kind == "shapes":
        from .scenes import SCENE_CELLS, SCENE_HEAD_NAMES, SCENE_HEAD_VALUES, scene_training_data

        count = int(recipe["train_images"])
        logger.info("training the shapes scene classifier on %d real train scenes", count)
        images, targets = scene_training_data(count, CLASSIFIER_IMAGE_SIZE)
        stacked = _Stacked(images, targets, SCENE_HEAD_NAMES, SCENE_HEAD_VALUES)
        if settings.get("arch") == "slots":
            settings["cells"] = SCENE_CELLS
        classifier = train_attribute_classifier(stacked, image_size=CLASSIFIER_IMAGE_SIZE, seed=seed, device=device,
                                                **settings)
        classifier.metadata.update({"data": train_spec.describe(CLASSIFIER_IMAGE_SIZE), "recipe": recipe})
        return classifier
    dataset = build_split(train_spec, "train", CLASSIFIER_IMAGE_SIZE)
    count = min(len(dataset), int(recipe["train_images"]))
    picked = np.random.default_rng(seed).permutation(len(dataset))[:count] if count < len(dataset) else range(count)
    images = torch.empty(count, 3, CLASSIFIER_IMAGE_SIZE, CLASSIFIER_IMAGE_SIZE, dtype=torch.uint8)
    attributes = []
    for row, i in enumerate(picked):
        item = dataset[int(i)]
        images[row] = ((item["images"][-1] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        attributes.append(torch.as_tensor(item["attributes"]))
    names = tuple(dataset.attribute_names)
    values = tuple(len(v) for v in dataset.attribute_values)
    logger.info("training the %s attribute classifier on %d real train images", spec.kind, count)
    stacked = _Stacked(images, torch.stack(attributes).to(torch.int64), names, values)
    classifier = train_attribute_classifier(stacked, image_size=CLASSIFIER_IMAGE_SIZE, seed=seed, device=device,
                                            **settings)
    classifier.metadata.update({"data": train_spec.describe(CLASSIFIER_IMAGE_SIZE), "recipe": recipe,
                                "attribute_values": [list(v) for v in dataset.attribute_values]})
    return classifier


def data_classifier(spec: DataSpec, path: str | os.PathLike[str] | None = None, train: bool = False,
                    seed: int = 0, device: str | torch.device = "cpu") -> tuple[AttributeClassifier, Path]:
    """The attribute classifier of ``spec``'s data set and its folder.

    ``train``: train it on the train split and save it to ``path`` (default: the cache
    folder of :func:`classifier_cache_dir`); otherwise load it from there. A missing
    folder raises ``FileNotFoundError`` naming ``--train-classifier``.
    """
    folder = Path(path) if path is not None else classifier_cache_dir(spec, seed=seed)
    if train:
        classifier = train_data_classifier(spec, seed=seed, device=device)
        save_classifier(classifier, folder)
        logger.info("attribute classifier saved to %s", folder)
        return classifier.to(device), folder
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"no attribute classifier at {folder}: pass --train-classifier to train one on "
                                f"the {spec.kind} train split (2-4 minutes on a CPU) or --classifier DIR")
    return load_classifier(folder, device), folder


def describe_classifier(classifier: AttributeClassifier, folder: Path | None = None) -> dict[str, Any]:
    """What a record says about a classifier: config, training metadata, folder."""
    out = {"config": asdict(classifier.config), "metadata": dict(classifier.metadata)}
    if folder is not None:
        out["folder"] = str(folder)
    return out
