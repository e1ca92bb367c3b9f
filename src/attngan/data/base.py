"""The base class of the file-backed data sets: records, caption choice, reproducible
randomness, decoded-image caching and bad-sample accounting."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..text import Vocabulary, subsample_ids
from .common import (
    DataError,
    ImageCache,
    MissingImagesError,
    bbox_crop_region,
    check_image_sizes,
    image_tensors,
    load_size,
    open_rgb,
    resize_short_edge,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
MISSING_POLICIES = ("error", "skip")


@dataclass
class Record:
    """One image and its captions (token ids)."""

    key: str
    image: Path | None
    class_id: int
    captions: list[list[int]]
    box: tuple[float, float, float, float] | None = None  # CUB bounding box x, y, w, h
    box_where: str = ""  # where the box was read, for error messages
    attributes: tuple[int, ...] | None = None


@dataclass
class Pending:
    """A record whose captions are still tokens (the vocabulary may not exist yet)."""

    record: Record
    tokens: list[list[str]]
    where: list[str]  # "file:line" (or similar) of each caption


class CaptionImageDataset(Dataset):
    """Images with captions. ``len`` is the number of images; each item uses one caption.

    Item (a dict): ``images`` list of ``[3, s, s]`` float tensors in [-1, 1] (ascending
    ``image_sizes``), ``tokens [max_words]`` int64 zero-padded, ``length`` int,
    ``class_id`` int, ``key`` str, ``caption_index`` int and, for data sets with
    attributes, ``attributes [K]`` int64.

    Caption choice: random among the image's captions in training mode; caption
    ``index % n_captions`` otherwise. Long captions are subsampled in order in training
    mode (as the original) and cut to the first ``max_words`` ids otherwise.

    Randomness (caption, subsampling, crop, flip) comes from
    ``numpy.random.default_rng([seed, epoch, index])``: reproducible, different per epoch
    (call :meth:`set_epoch`) and independent of the DataLoader worker.

    Bad samples: with ``skip_bad=False`` the first one raises :class:`DataError` naming the
    file (and line); with ``skip_bad=True`` it is skipped and listed in
    ``skipped[reason]``. Images that fail to decode while iterating are replaced by the
    next readable one (``skipped`` then lives in the process that met them).
    """

    attribute_names: tuple[str, ...] = ()
    attribute_values: tuple[tuple[str, ...], ...] = ()
    exif_transpose = False

    def __init__(self, *, split: str, image_sizes: Sequence[int], max_words: int, train: bool | None,
                 seed: int, skip_bad: bool, cache_dir: str | os.PathLike[str] | None = None,
                 cache_memory_mb: float = 1024) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if max_words < 1:
            raise ValueError(f"max_words must be >= 1, got {max_words}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.split = split
        self.image_sizes = check_image_sizes(image_sizes)
        self.max_words = int(max_words)
        self.train = split == "train" if train is None else bool(train)
        self.seed = int(seed)
        self.epoch = 0
        self.skip_bad = bool(skip_bad)
        self.skipped: dict[str, list[str]] = {}
        self.missing: list[str] = []
        self.records: list[Record] = []
        self.vocab: Vocabulary
        self.captions_per_image = 0
        self.num_classes = 0
        self.cache = ImageCache(cache_dir, cache_memory_mb)
        self._bad_indices: set[int] = set()
        self.num_words = 0  # caption words read (kept records' and dropped ones')
        self.unknown_words: dict[str, int] = {}  # words not in the vocabulary -> count

    # ------------------------------------------------------------------ public API

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws of every item (call before each training epoch)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The generator of item ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def all_captions(self, index: int) -> list[list[int]]:
        """Every caption (token ids, not truncated) of image ``index``."""
        return [list(c) for c in self.records[index].captions]

    def caption_text(self, index: int, caption_index: int) -> str:
        """Caption ``caption_index`` of image ``index`` as words."""
        return " ".join(self.vocab.decode(self.records[index].captions[caption_index]))

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        index %= n
        for attempt in range(min(n, 64)):
            i = (index + attempt) % n
            if i in self._bad_indices:
                continue
            try:
                return self._item(i, self.rng(i))
            except (DataError, FileNotFoundError) as exc:
                if not self.skip_bad:
                    raise
                self._bad_indices.add(i)
                self.note_skip("unreadable_image", str(exc))
        raise DataError(f"no readable item among the {min(n, 64)} from index {index}")

    def preload(self, threads: int = 1) -> int:
        """Decode every image into the cache now; with ``skip_bad`` unreadable images are
        dropped (indices shift), else the first raises. Returns the number of images."""
        size = self.image_sizes[-1]
        load = load_size(size, self.train)

        def work(i: int) -> str | None:
            try:
                self.load_array(self.records[i], load)
                return None
            except (DataError, FileNotFoundError) as exc:
                if not self.skip_bad:
                    raise
                return str(exc)

        with ThreadPoolExecutor(max(1, threads)) as pool:
            errors = list(pool.map(work, range(len(self.records))))
        bad = [i for i, e in enumerate(errors) if e is not None]
        for i in bad:
            self.note_skip("unreadable_image", errors[i] or "")
        if bad:
            keep = set(range(len(self.records))) - set(bad)
            self.records = [r for i, r in enumerate(self.records) if i in keep]
            self._bad_indices.clear()
            self.log_skips()
        return len(self.records)

    # ------------------------------------------------------------------ items and images

    def _item(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        record = self.records[index]
        count = len(record.captions)
        caption_index = int(rng.integers(count)) if self.train else index % count
        ids = record.captions[caption_index]
        if len(ids) > self.max_words:
            ids = subsample_ids(ids, self.max_words, rng) if self.train else ids[: self.max_words]
        tokens = torch.zeros(self.max_words, dtype=torch.int64)
        tokens[: len(ids)] = torch.as_tensor(ids, dtype=torch.int64)
        item: dict[str, Any] = {
            "images": self.images(index, rng),
            "tokens": tokens,
            "length": len(ids),
            "class_id": record.class_id,
            "key": record.key,
            "caption_index": caption_index,
        }
        if record.attributes is not None:
            item["attributes"] = torch.tensor(record.attributes, dtype=torch.int64)
        return item

    def images(self, index: int, rng: np.random.Generator | None) -> list[torch.Tensor]:
        """Stage tensors ``[3, s, s]`` of image ``index`` (``rng`` drives the train crop)."""
        size = self.image_sizes[-1]
        array = self.load_array(self.records[index], load_size(size, self.train))
        return image_tensors(array, self.image_sizes, self.train, rng)

    def load_array(self, record: Record, load: int) -> np.ndarray:
        """``[H, W, 3]`` uint8 image (cropped, short edge ``load``), through the cache."""
        assert record.image is not None
        return self.cache.get(record.image, load, record.box, lambda: self.decode(record, load))

    def decode(self, record: Record, load: int) -> np.ndarray:
        assert record.image is not None
        img = open_rgb(record.image, exif_transpose=self.exif_transpose)
        if record.box is not None:
            try:
                region = bbox_crop_region(record.box, img.width, img.height)
            except ValueError as exc:
                raise DataError(f"{record.image}: {exc} ({record.box_where})") from None
            img = img.crop(region)
        return np.asarray(resize_short_edge(img, load))

    # ------------------------------------------------------------------ building helpers

    def note_skip(self, reason: str, what: str) -> None:
        """Count a skipped sample under ``reason``."""
        self.skipped.setdefault(reason, []).append(what)
        logger.debug("skipped (%s): %s", reason, what)

    def log_skips(self) -> None:
        if self.skipped:
            counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(self.skipped.items()))
            logger.warning("%s %s split: skipped %s", type(self).__name__, self.split, counts)

    def handle_missing(self, missing: Sequence[str], total: int, listing: str, where: str, policy: str) -> None:
        """Apply the ``missing`` policy to names listed in ``listing`` without an image."""
        if policy not in MISSING_POLICIES:
            raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {policy!r}")
        self.missing = list(missing)
        if not missing:
            return
        first = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        if policy == "error":
            raise MissingImagesError(
                f"{len(missing)} of {total} images listed in {listing} are missing under {where} "
                f"(first: {first}); for a partial download pass missing='skip' to use the "
                f"{total - len(missing)} present images")
        logger.warning("%d of %d images listed in %s are missing under %s; using the %d present (first missing: %s)",
                       len(missing), total, listing, where, total - len(missing), first)

    def finalise(self, pending: Iterable[Pending], vocab: Vocabulary, required: int | None) -> None:
        """Encode captions with ``vocab`` (unknown words dropped, as the original, and counted
        in ``unknown_words``) and keep the records with at least ``required`` captions (any
        number if None, but >= 1)."""
        self.vocab = vocab
        records = []
        for item in pending:
            captions = []
            for tokens, where in zip(item.tokens, item.where):
                ids, dropped = vocab.encode_tokens(tokens)
                self.num_words += len(tokens)
                for word in dropped:
                    self.unknown_words[word] = self.unknown_words.get(word, 0) + 1
                if ids:
                    captions.append(ids)
                elif not self.skip_bad:
                    raise DataError(f"{where}: no word of the caption is in the vocabulary; pass skip_bad=True to skip it")
                else:
                    self.note_skip("bad_caption", f"{where}: no word in the vocabulary")
            need = required or 1
            if len(captions) < need:
                message = f"{item.record.image or item.record.key}: {len(captions)} usable captions, {need} required"
                if not self.skip_bad:
                    raise DataError(message)
                self.note_skip("too_few_captions", message)
                continue
            item.record.captions = captions[:required] if required else captions
            records.append(item.record)
        self.records = records
        self.log_skips()
        if not records:
            raise DataError(f"{type(self).__name__} {self.split} split has no usable image")


def build_vocabulary(token_lists: Iterable[Sequence[str]]) -> Vocabulary:
    """Vocabulary in order of first appearance of the given captions."""
    return Vocabulary.build(token_lists)
