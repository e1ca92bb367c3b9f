"""Images described by attribute tags: a header-less CSV of ``id,<hair> hair <eye> eyes``
beside ``images/<id>.jpg`` (the 64x64 anime faces of the MLDS 2018 "extra data").

The caption of an image is its tag text. Attributes are ``[hair index, eye index]`` into
the sorted distinct hair / eye colours found in the CSV; the class id is
``hair * n_eye_colors + eye`` so that DAMSM never uses a same-tag pair as a negative.
A hash of the id holds out ``test_fraction`` (5%) of the images as the test split.

With ``cache_dir`` the decoded images of a split are stored in one ``.npy`` array (memory
mapped when read back), so an epoch never waits for JPEG decoding.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..files import atomic_file
from ..text import Vocabulary, tokenize
from .base import CaptionImageDataset, Pending, Record, build_vocabulary
from .common import DataError, open_rgb, resize_short_edge
from .folder import hash_split

logger = logging.getLogger(__name__)

# The colours of the shared anime-faces data; a data set derives its own from its CSV.
HAIR_COLORS = ("aqua", "black", "blonde", "blue", "brown", "gray", "green", "orange", "pink", "purple", "red", "white")
EYE_COLORS = ("aqua", "black", "blue", "brown", "green", "orange", "pink", "purple", "red", "yellow")

_TAG = re.compile(r"^\s*(\S.*?)\s+hair\s+(\S.*?)\s+eyes\s*$")


@functools.lru_cache(maxsize=4096)
def _tokens_cached(text: str) -> tuple[str, ...]:
    return tuple(tokenize(text))


def _tokens(text: str) -> list[str]:
    """``tokenize`` memoised: a tag file repeats a few hundred texts many times."""
    return list(_tokens_cached(text))


def parse_tag(text: str) -> tuple[str, str] | None:
    """``"blonde hair blue eyes"`` -> ``("blonde", "blue")``; None when it does not match."""
    match = _TAG.match(text.lower())
    return (match.group(1), match.group(2)) if match else None


class TagsDataset(CaptionImageDataset):
    """Tagged images; arguments as :class:`~attngan.data.CubDataset` plus:

    Args:
        test_fraction: share of ids held out as the test split (by hash of the id).
        tags_file: the CSV, relative to ``root`` (``tags.csv``).
        image_dir: image folder, relative to ``root`` (``images``); files ``<id>.jpg``.
        limit: keep only the first ``limit`` present images of the split (CSV order).

    ``attribute_names`` is ``("hair", "eye")``; ``attribute_values`` the colour lists.
    """

    attribute_names = ("hair", "eye")

    def __init__(self, root: str | os.PathLike[str], split: str = "train", image_sizes: Sequence[int] = (64,),
                 max_words: int = 18, train: bool | None = None, seed: int = 0, skip_bad: bool = False,
                 vocab: Vocabulary | None = None, missing: str = "error", test_fraction: float = 0.05,
                 tags_file: str = "tags.csv", image_dir: str = "images", limit: int | None = None,
                 captions_per_image: int | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 cache_memory_mb: float = 1024) -> None:
        super().__init__(split=split, image_sizes=image_sizes, max_words=max_words, train=train, seed=seed,
                         skip_bad=skip_bad, cache_dir=cache_dir, cache_memory_mb=cache_memory_mb)
        if captions_per_image not in (None, 1):
            raise ValueError(f"a tagged image has one caption (its tags), not {captions_per_image}")
        self.root = Path(root)
        self.captions_per_image = 1
        tags_path = self.root / tags_file
        rows = self._read_rows(tags_path)
        hairs = sorted({h for _, _, h, _ in rows})
        eyes = sorted({e for _, _, _, e in rows})
        self.attribute_values = (tuple(hairs), tuple(eyes))
        self.num_classes = len(hairs) * len(eyes)
        if vocab is None:
            vocab = build_vocabulary(_tokens(text) for _, text, _, _ in rows)
        folder = self.root / image_dir
        chosen = [r for r in rows if hash_split(r[0], test_fraction) == split]
        stats: dict[str, os.stat_result] = {}
        absent = []
        for image_id, *_ in chosen:
            if limit is not None and len(stats) >= limit:
                break
            try:
                stats[image_id] = (folder / f"{image_id}.jpg").stat()
            except FileNotFoundError:
                absent.append(f"{image_id}.jpg")
        self.handle_missing(absent, len(stats) + len(absent), str(tags_path), str(folder), missing)
        pending = []
        for image_id, text, hair, eye in chosen:
            if image_id not in stats:
                continue
            path = folder / f"{image_id}.jpg"
            if stats[image_id].st_size == 0:
                if not self.skip_bad:
                    raise DataError(f"{path}: empty image file (0 bytes); pass skip_bad=True to skip it")
                self.note_skip("empty_image", str(path))
                continue
            h, e = hairs.index(hair), eyes.index(eye)
            record = Record(key=image_id, image=path, class_id=h * len(eyes) + e, captions=[], attributes=(h, e))
            pending.append(Pending(record, [_tokens(text)], [f"{tags_path}: id {image_id}"]))
            if limit is not None and len(pending) >= limit:
                break
        self.finalise(pending, vocab, 1)
        self._bulk: np.ndarray | None = None
        self._bulk_file: Path | None = None
        self._rows: dict[str, int] = {}
        if cache_dir is not None:
            ident = repr((str(tags_path.resolve()), tags_path.stat().st_mtime_ns, split, test_fraction,
                          [(r.key, stats[r.key].st_mtime_ns, stats[r.key].st_size) for r in self.records]))
            self._load_bulk(Path(cache_dir) / f"tags-{hashlib.sha1(ident.encode()).hexdigest()[:24]}.npy")

    def _read_rows(self, path: Path) -> list[tuple[str, str, str, str]]:
        """(id, tag text, hair, eye) of every usable CSV row, in file order."""
        try:
            handle = path.open(encoding="utf-8", newline="")
        except FileNotFoundError:
            raise FileNotFoundError(f"tag file not found: {path}") from None
        rows, seen = [], set()
        with handle:
            for number, fields in enumerate(csv.reader(handle), start=1):
                if not fields or not "".join(fields).strip():
                    continue
                problem = None
                parsed = parse_tag(fields[1]) if len(fields) == 2 else None
                if len(fields) != 2:
                    problem = f"expected 'id,tag text', got {len(fields)} fields"
                elif not fields[0].strip() or fields[0].strip() in seen:
                    problem = f"missing or repeated id {fields[0]!r}"
                elif parsed is None or not _tokens(fields[1]):
                    problem = f"tag {fields[1][:40]!r} is not '<colour> hair <colour> eyes'"
                if problem is not None:
                    if not self.skip_bad:
                        raise DataError(f"{path}:{number}: {problem}; pass skip_bad=True to skip such rows")
                    self.note_skip("bad_tag_row", f"{path}:{number}: {problem}")
                    continue
                seen.add(fields[0].strip())
                assert parsed is not None  # a problem otherwise
                hair, eyes = parsed
                rows.append((fields[0].strip(), fields[1].strip(), hair, eyes))
        if not rows:
            raise DataError(f"{path}: no usable row")
        return rows

    def _load_bulk(self, file: Path) -> None:
        """All images of the split in one ``[N, H, W, 3]`` uint8 array, built once."""
        if not file.exists():
            def decode(record: Record) -> np.ndarray | str:
                try:
                    assert record.image is not None  # tag rows always name their image file
                    return np.asarray(open_rgb(record.image))
                except DataError as exc:
                    if not self.skip_bad:
                        raise
                    return str(exc)

            with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # decoding releases the GIL
                decoded = list(pool.map(decode, self.records))
            arrays, keep = [], []
            for record, result in zip(self.records, decoded):
                if isinstance(result, str):
                    self.note_skip("unreadable_image", result)
                else:
                    arrays.append(result)
                    keep.append(record)
            if len({a.shape for a in arrays}) != 1:
                logger.info("tag images differ in size: caching them one by one instead of in %s", file)
                self.records = keep
                return
            with atomic_file(file.with_suffix(".keys.npy"), durable=False) as f:  # a cache: rebuilt if lost
                np.save(f, np.array([r.key for r in keep]))
            with atomic_file(file, durable=False) as f:
                np.save(f, np.stack(arrays))
            logger.info("cached %d decoded images in %s", len(keep), file)
        keys = [str(k) for k in np.load(file.with_suffix(".keys.npy"))]
        self._rows = {k: i for i, k in enumerate(keys)}
        for record in self.records:
            if record.key not in self._rows:
                self.note_skip("unreadable_image", f"{record.image} (unreadable when {file.name} was built)")
        self.records = [r for r in self.records if r.key in self._rows]
        self._bulk_file = file
        self._bulk = np.load(file, mmap_mode="r")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if state.get("_bulk") is not None:
            state["_bulk"] = None  # reopened (memory-mapped, shared) in the receiving process
        return state

    def load_array(self, record: Record, load: int) -> np.ndarray:
        if self._bulk is None and self._bulk_file is not None:
            self._bulk = np.load(self._bulk_file, mmap_mode="r")
        if self._bulk is None:
            return super().load_array(record, load)
        array = np.asarray(self._bulk[self._rows[record.key]])
        if min(array.shape[:2]) == load:
            return array
        return np.asarray(resize_short_edge(Image.fromarray(array), load))
