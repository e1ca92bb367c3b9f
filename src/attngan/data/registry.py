"""The data-set registry: a kind's name -> its class, the one way a run or an evaluation
builds a data set from its options, and the example captions a trained model keeps from its data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..text import Vocabulary, pick_example_captions, spread_positions
from .coco import CocoDataset, CocoJsonDataset
from .counterfactual import Counterfactuals
from .cub import CubDataset
from .folder import FolderDataset
from .shapes import ShapesDataset
from .shapes_rounded import RoundedNegatives
from .spec import DATA_KINDS, PROCEDURAL, DataSpec
from .tags import TagsDataset
from .types import TextImageData

DATASETS: dict[str, type] = {"shapes": ShapesDataset, "cub": CubDataset, "coco": CocoDataset,
                             "coco-json": CocoJsonDataset, "folder": FolderDataset, "tags": TagsDataset}
assert tuple(DATASETS) == DATA_KINDS, "data/spec.py DATA_KINDS must list the registry's kinds"
MISSING_AWARE = ("cub", "coco")  # take ``missing="error" | "skip"`` for listed-but-absent images


def dataset_kinds() -> dict[str, type]:
    """Name -> data set class, for :func:`build_dataset`."""
    return dict(DATASETS)


def build_dataset(kind: str, root: str | os.PathLike[str] | None = None, **kwargs: Any) -> TextImageData:
    """``build_dataset("cub", "data/birds", split="test", image_sizes=(64, 128, 256))``.

    Kinds: ``shapes`` (no root), ``cub``, ``coco``, ``coco-json``, ``folder``, ``tags``;
    keyword arguments go to the data set's constructor.
    """
    if kind not in DATASETS:
        raise ValueError(f"unknown data set kind {kind!r}; choose one of {', '.join(DATASETS)}")
    if kind in PROCEDURAL:
        if root is not None:
            raise ValueError(f"the {kind} data set is procedural and takes no root folder")
        return DATASETS[kind](**kwargs)
    if root is None:
        raise ValueError(f"the {kind} data set needs a root folder")
    return DATASETS[kind](root, **kwargs)


def build_from_options(spec: DataSpec, image_sizes: tuple[int, ...], max_words: int, split: str | None = None,
                       train: bool = True, seed: int = 0, vocab: Vocabulary | None = None, **overrides: Any
                       ) -> TextImageData:
    """The data set that ``spec`` describes (a training run's ``data`` section or an evaluation's
    data options); with ``train`` and ``spec.counterfactuals``, its items carry counterfactual
    captions (:class:`~attngan.data.counterfactual.Counterfactuals`), and with ``spec.rounded_negatives``
    rounded negatives (:class:`~attngan.data.shapes_rounded.RoundedNegatives`). ``split`` None reads ``spec.split``, or ``train`` when that is None too;
    ``overrides`` replace entries of ``spec.extra`` (e.g. the shapes data ``seed`` of a second draw)."""
    if not isinstance(spec, DataSpec):
        raise TypeError(f"build_from_options needs a DataSpec, got {type(spec).__name__}")
    kwargs: dict[str, Any] = {**spec.extra, **overrides}
    if vocab is not None:
        kwargs["vocab"] = vocab
    if spec.captions_per_image is not None:
        kwargs["captions_per_image"] = spec.captions_per_image
    if spec.cache_dir is not None:
        kwargs["cache_dir"] = spec.cache_dir
    if spec.kind in MISSING_AWARE:
        kwargs["missing"] = spec.missing
    kwargs.setdefault("seed", seed)
    data = build_dataset(spec.kind, spec.root, split=split or spec.split_or("train"), image_sizes=image_sizes,
                         max_words=max_words, train=train, skip_bad=spec.skip_bad, **kwargs)
    if spec.counterfactuals and train:
        data = Counterfactuals(data, spec.counterfactuals, spec.counterfactual_words, seed=seed,
                               shapes_weights=spec.shapes_counterfactual_weights)
    if spec.rounded_negatives and train:
        data = RoundedNegatives(data, spec.rounded_negatives)
    return data


def example_captions(dataset: TextImageData, vocab: Vocabulary, count: int = 6, max_words: int | None = None) -> list[str]:
    """Captions of ``dataset`` to offer as a model's examples (``metadata.example_captions``).

    Looks at images spread evenly over the data set (a shapes set: one- and two-object
    scenes alike; birds: several species) and takes each one's shortest caption that the model
    reads whole (every word in ``vocab``, at most ``max_words`` words); deterministic, and no
    image is decoded. Fewer than ``count`` when the data set has too few such captions.
    """
    n = len(dataset)
    if n == 0 or count < 1:
        return []

    def candidates() -> Iterator[str]:
        for index in spread_positions(n, count):
            texts = [dataset.caption_text(index, c) for c in range(len(dataset.all_captions(index)))]
            if texts:
                yield min(texts, key=lambda t: (len(t.split()), t))

    return pick_example_captions(candidates(), vocab, count, max_words)
