"""The data-set registry: a kind's name -> its class, the one way a run or an evaluation
builds a data set from its options, and the example captions a trained model keeps from its data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch

from ..text import Vocabulary, pick_example_captions, spread_positions
from .coco import CocoDataset, CocoJsonDataset
from .cub import CubDataset
from .folder import FolderDataset
from .shapes import ShapesDataset
from .tags import TagsDataset

DATASETS: dict[str, type] = {"shapes": ShapesDataset, "cub": CubDataset, "coco": CocoDataset,
                             "coco-json": CocoJsonDataset, "folder": FolderDataset, "tags": TagsDataset}
DATA_KINDS = tuple(DATASETS)
PROCEDURAL = ("shapes",)  # no root folder
MISSING_AWARE = ("cub", "coco")  # take ``missing="error" | "skip"`` for listed-but-absent images


def dataset_kinds() -> dict[str, type]:
    """Name -> data set class, for :func:`build_dataset`."""
    return dict(DATASETS)


def build_dataset(kind: str, root: str | os.PathLike[str] | None = None, **kwargs: Any) -> torch.utils.data.Dataset:
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


def build_from_options(options: Any, image_sizes: tuple[int, ...], max_words: int, split: str = "train",
                       train: bool = True, seed: int = 0, vocab: Any = None) -> torch.utils.data.Dataset:
    """The data set that ``options`` (``kind``, ``root``, ``captions_per_image``, ``cache_dir``,
    ``skip_bad``, ``missing``, ``extra``: a training run's ``data`` section) describe."""
    kwargs: dict[str, Any] = dict(options.extra)
    if vocab is not None:
        kwargs["vocab"] = vocab
    if options.captions_per_image is not None:
        kwargs["captions_per_image"] = options.captions_per_image
    if options.cache_dir is not None:
        kwargs["cache_dir"] = options.cache_dir
    if options.kind in MISSING_AWARE:
        kwargs["missing"] = options.missing
    return build_dataset(options.kind, options.root, split=split, image_sizes=image_sizes, max_words=max_words,
                         train=train, seed=seed, skip_bad=options.skip_bad, **kwargs)


def example_captions(dataset: Any, vocab: Vocabulary, count: int = 6, max_words: int | None = None) -> list[str]:
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
