"""The data side of an evaluation: which captions are generated from, their real images, the
distractor caption pool, and attribute classifiers trained per data set.

Sample ``k`` of an evaluation of ``num_samples`` over a split of ``n`` images uses image
``order[k % n]``, ``order`` being the class-stratified shuffle of
:func:`~attngan.metrics.protocol.stratified_order` (seeded by the evaluation seed): any
number of samples is spread over every class of the split, whatever order the split lists
its images in. On the first pass over the split (``k < n``) a sample takes its image's own
evaluation caption; later passes take the image's next captions in turn. Only the first pass
contributes real images (each real image counted once). Captions are encoded with the
*model's* vocabulary and cut to its ``max_words``, exactly as the model reads them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache import cache_dir
from ..data.spec import DataSpec
from ..errors import MissingFileError, SettingError
from ..text import Vocabulary, pad_batch
from .classifier import AttributeClassifier, load_classifier, save_classifier, train_attribute_classifier
from .protocol import stratified_order
from .r_precision import CaptionPool

logger = logging.getLogger(__name__)

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


def build_split(spec: DataSpec, split: str, image_size: int, vocab: Vocabulary | None = None,
                max_words: int = 18, **extra: Any) -> Any:
    """The ``split`` of ``spec``'s data set at ``image_size`` px, evaluation mode (centre crops,
    fixed captions), read with ``spec``'s options (``missing``, ``skip_bad``, ``cache_dir``,
    ``captions_per_image``, ``extra``). ``vocab`` None keeps the data set's own vocabulary;
    ``extra``: further data set arguments (e.g. the shapes data ``seed`` of a second draw)."""
    from ..data import DataError, MissingImagesError, build_from_options

    try:
        return build_from_options(spec, (image_size,), max_words, split=split, train=False, vocab=vocab, **extra)
    except (DataError, FileNotFoundError) as exc:
        hint = " (set {data.missing} skip to use the images present)" if isinstance(exc, MissingImagesError) else ""
        raise SettingError("data.root" if spec.root else "data.kind",
                           f"{spec.root or spec.kind}: {exc}{hint}") from None


def class_ids_of(dataset: Any) -> list[int]:
    """Class id of every image, without decoding images where the data set allows it
    (file-backed sets keep them in ``records``; procedural ones give ``class_ids()``)."""
    records = getattr(dataset, "records", None)
    if records is not None:
        return [int(r.class_id) for r in records]
    if callable(getattr(dataset, "class_ids", None)):
        return [int(c) for c in dataset.class_ids()]
    return [int(dataset[i]["class_id"]) for i in range(len(dataset))]


class EvalSamples:
    """The caption plan of an evaluation: ``num_samples`` samples over ``dataset`` (see the module doc);
    ``order_seed``: the evaluation seed, which seeds the stratified order."""

    def __init__(self, dataset: Any, num_samples: int, max_words: int, order_seed: int = 0) -> None:
        if len(dataset) == 0:
            raise ValueError("the evaluation split has no image")
        if num_samples < 1:
            raise SettingError("num_samples", f"must be >= 1, got {num_samples}")
        self.dataset, self.num_samples, self.max_words = dataset, int(num_samples), int(max_words)
        self.order = stratified_order(class_ids_of(dataset), order_seed)
        self.has_attributes = bool(getattr(dataset, "attribute_names", ()))
        self.has_scenes = callable(getattr(dataset, "scene", None))  # the shapes data set

    @property
    def num_real(self) -> int:
        """Distinct real images the samples cover (the first pass over the split)."""
        return min(self.num_samples, len(self.dataset))

    def image_index(self, k: int) -> int:
        """The data set index of sample ``k``'s image."""
        return int(self.order[k % len(self.dataset)])

    def item(self, k: int) -> dict[str, Any]:
        """Sample ``k``: its caption ids (cut to ``max_words``), the image's item fields and the
        caption as written (shapes)."""
        n, i = len(self.dataset), self.image_index(k)
        item = self.dataset[i]
        ids = item["tokens"][: int(item["length"])].tolist()
        choice = int(item["caption_index"])
        if k >= n:
            usable = [j for j, c in enumerate(self.dataset.all_captions(i)) if c]
            choice = usable[(choice + k // n) % len(usable)]
            ids = self.dataset.all_captions(i)[choice]
        out = {"index": k, "image_index": i, "ids": list(ids)[: self.max_words], "class_id": int(item["class_id"]),
               "key": str(item["key"]), "real": item["images"][-1], "first_pass": k < n}
        if self.has_attributes and "attributes" in item:
            out["attributes"] = torch.as_tensor(item["attributes"])
        if self.has_scenes:
            out["scene"] = self.dataset.scene(i)
            out["caption_text"] = self.dataset.caption_text(i, choice)
        return out

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """A batch of :meth:`item` s: ``indices [B]`` (sample numbers), ``image_indices [B]``,
        ``tokens [B, T]``, ``lengths [B]``, ``class_ids [B]``, ``keys``, ``texts``, ``real [B, 3, S, S]``
        (the captions' images), ``first_pass [B]`` bool and, when the data set has them,
        ``attributes [B, K]``; for shapes also ``scenes`` (the captions'
        :class:`~attngan.data.shapes.Scene`), ``names_background [B]`` bool and ``caption_texts``
        (the captions as written, before the model's vocabulary)."""
        tokens, lengths = pad_batch([it["ids"] for it in items])
        vocab = self.dataset.vocab
        out: dict[str, Any] = {
            "indices": torch.tensor([it["index"] for it in items], dtype=torch.int64),
            "image_indices": torch.tensor([it["image_index"] for it in items], dtype=torch.int64),
            "tokens": tokens, "lengths": lengths,
            "class_ids": torch.tensor([it["class_id"] for it in items], dtype=torch.int64),
            "keys": [it["key"] for it in items],
            "texts": [" ".join(vocab.decode(it["ids"])) for it in items],
            "real": torch.stack([it["real"] for it in items]).float(),
            "first_pass": torch.tensor([it["first_pass"] for it in items]),
        }
        if "attributes" in items[0]:
            out["attributes"] = torch.stack([it["attributes"] for it in items]).to(torch.int64)
        if self.has_scenes:
            from ..data.shapes_captions import names_background

            out["scenes"] = [it["scene"] for it in items]
            out["caption_texts"] = [it["caption_text"] for it in items]
            out["names_background"] = torch.tensor([names_background(t) for t in out["caption_texts"]],
                                                   dtype=torch.bool)
        return out

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        """Samples ``indices`` as one batch (see :meth:`collate`)."""
        return self.collate([self.item(int(k)) for k in indices])

    def batches(self, indices: range, batch_size: int, num_workers: int = 0) -> Iterator[dict[str, Any]]:
        """Batches of ``batch_size`` consecutive samples of ``indices``, read by ``num_workers``
        worker processes (0: in this one)."""
        chunks = [list(range(a, min(a + batch_size, indices.stop))) for a in range(indices.start, indices.stop,
                                                                                   batch_size)]
        if num_workers == 0:
            yield from (self.batch(chunk) for chunk in chunks)
            return
        loader = torch.utils.data.DataLoader(_Items(self), batch_sampler=chunks, collate_fn=self.collate,
                                             num_workers=num_workers)
        yield from loader

    def caption_pool(self) -> CaptionPool:
        """Every caption of the split (cut to ``max_words``) with its image's class id: the distractors."""
        captions, classes = [], []
        for i, class_id in enumerate(class_ids_of(self.dataset)):
            for ids in self.dataset.all_captions(i):
                if ids:
                    captions.append(ids[: self.max_words])
                    classes.append(class_id)
        if not captions:
            raise ValueError("the evaluation split has no usable caption for R-precision")
        return CaptionPool.from_captions(captions, classes, self.max_words)


class _Items(torch.utils.data.Dataset):
    """The samples of an :class:`EvalSamples` as a map-style data set (for worker processes)."""

    def __init__(self, samples: EvalSamples) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return self.samples.num_samples

    def __getitem__(self, k: int) -> dict[str, Any]:
        return self.samples.item(k)


# --------------------------------------------------------------------------- attribute classifiers


def classifier_recipe(kind: str) -> dict[str, Any]:
    """Training settings of the attribute classifier of a data set kind (shapes, tags)."""
    if kind not in CLASSIFIER_RECIPES:
        raise SettingError("data.kind", f"{kind} has no attributes: attribute accuracy needs shapes or tags")
    return dict(CLASSIFIER_RECIPES[kind])


def _classifier_data(spec: DataSpec) -> dict[str, Any]:
    """The data part of a classifier's cache key: its train split as read with ``spec``'s options."""
    return replace(spec, split="train").describe(CLASSIFIER_IMAGE_SIZE)


def classifier_cache_dir(spec: DataSpec, recipe: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """``<cache>/classifiers/<kind>-<key>``: key = hash of the data settings, recipe and seed."""
    recipe = recipe or classifier_recipe(spec.kind)
    payload = {"data": _classifier_data(spec), "recipe": recipe, "seed": seed}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir("classifiers") / f"{spec.kind}-{key}"


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
    train_spec = replace(spec, split="train")
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
        classifier.metadata.update({"data": _classifier_data(spec), "recipe": recipe})
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
    classifier.metadata.update({"data": _classifier_data(spec), "recipe": recipe,
                                "attribute_values": [list(v) for v in dataset.attribute_values]})
    return classifier


def data_classifier(spec: DataSpec, path: str | os.PathLike[str] | None = None, train: bool = False,
                    seed: int = 0, device: str | torch.device = "cpu") -> tuple[AttributeClassifier, Path]:
    """The attribute classifier of ``spec``'s data set and its folder.

    ``train``: train it on the train split and save it to ``path`` (default: the cache
    folder of :func:`classifier_cache_dir`); otherwise load it from there. A missing
    folder raises :class:`~attngan.errors.MissingFileError` (field ``classifier``).
    """
    folder = Path(path) if path is not None else classifier_cache_dir(spec, seed=seed)
    if train:
        classifier = train_data_classifier(spec, seed=seed, device=device)
        save_classifier(classifier, folder)
        logger.info("attribute classifier saved to %s", folder)
        return classifier.to(device), folder
    if not (folder / "config.json").exists():
        raise MissingFileError("classifier", f"no attribute classifier at {folder}: pass {{train_classifier}} to "
                               f"train one on the {spec.kind} train split (2-4 minutes on a CPU) or a folder")
    return load_classifier(folder, device), folder


def describe_classifier(classifier: AttributeClassifier, folder: Path | None = None) -> dict[str, Any]:
    """What a record says about a classifier: config, training metadata, folder."""
    out: dict[str, Any] = {"config": asdict(classifier.config), "metadata": dict(classifier.metadata)}
    if folder is not None:
        out["folder"] = str(folder)
    return out
