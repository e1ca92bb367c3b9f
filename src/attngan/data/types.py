"""What crosses from the data sets to training and evaluation: a data set as they see it
(:class:`TextImageData`) and a collated batch (:class:`Batch`)."""

from __future__ import annotations

from typing import Any, Protocol, TypedDict

import torch

from ..text import Vocabulary


class TextImageData(Protocol):
    """A data set of captioned images, as every reader of :mod:`attngan.data` builds one: item
    ``i`` is a dict with ``images`` (one ``[3, s, s]`` per resolution, in [-1, 1]), ``tokens``
    ``[T]``, ``length``, ``class_id``, ``caption_index``, ``key`` (and ``attributes`` where the
    data has them); :func:`~attngan.data.collate` batches them."""

    vocab: Vocabulary

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...

    def all_captions(self, index: int) -> list[list[int]]:
        """Token ids of every caption of image ``index``."""
        ...

    def caption_text(self, index: int, caption_index: int) -> str:
        """Caption ``caption_index`` of image ``index`` as text."""
        ...


class _BatchFields(TypedDict):
    images: list[torch.Tensor]  # one [B, 3, s, s] per resolution, in [-1, 1]
    tokens: torch.Tensor  # [B, T] int64, T = the longest caption of the batch
    lengths: torch.Tensor  # [B] int64
    class_ids: torch.Tensor  # [B] int64
    caption_indices: torch.Tensor  # [B] int64
    keys: list[str]


class Batch(_BatchFields, total=False):
    """A collated batch (:func:`~attngan.data.collate`); ``attributes [B, K]`` int64 where the
    data set has attributes, counterfactual captions ``negatives [B, K, T]`` with their
    ``negative_lengths [B, K]`` where it has them (``data.counterfactuals``), and rounded negatives
    ``rounded_images [B, 3, S, S]`` with ``rounded_valid [B]`` bool (``data.rounded_negatives``)."""

    attributes: torch.Tensor
    negatives: torch.Tensor
    negative_lengths: torch.Tensor
    rounded_images: torch.Tensor
    rounded_valid: torch.Tensor
