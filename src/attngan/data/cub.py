"""CUB-200-2011 birds in AttnGAN's ``data/birds`` layout::

    <root>/CUB_200_2011/images/<class>/<name>.jpg
    <root>/CUB_200_2011/images.txt, bounding_boxes.txt   (id -> file, id -> x y w h)
    <root>/text/<class>/<name>.txt                        (10 captions, one a line)
    <root>/{train,test}/filenames.pickle, class_info.pickle   (Python 2 pickles)

Unlike the original, captions never move between files: the first ``captions_per_image``
usable lines of an image's own file are its captions (see ``read_caption_file``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..text import Vocabulary
from ..untrusted import load_captions_pickle, safe_unpickle
from .base import SPLITS, CaptionImageDataset, Pending, Record, build_vocabulary
from .common import DataError, read_caption_file

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


def read_filenames(root: Path, split: str) -> list[str]:
    """``<root>/<split>/filenames.pickle``: image keys without extension."""
    path = root / split / "filenames.pickle"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (expected AttnGAN's layout under {root})")
    names = safe_unpickle(path)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{path}: expected a list of file names")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def read_class_ids(root: Path, split: str, names: Sequence[str], fallback: str = "folder") -> list[int]:
    """Class ids from ``<root>/<split>/class_info.pickle`` when it has one entry per listed
    name; otherwise from the ``NNN.`` class folder prefix (``fallback="folder"``) or the
    listing index (``fallback="index"``, as the original does for COCO)."""
    path = root / split / "class_info.pickle"
    if path.exists():
        info = safe_unpickle(path)
        if isinstance(info, (list, tuple, np.ndarray)) and len(info) == len(names):
            return [int(c) for c in info]
        size = len(info) if isinstance(info, (list, tuple, np.ndarray)) else "no"
        logger.warning("%s has %s entries for %d listed images: class ids taken from the %s instead",
                       path, size, len(names), "class folder names" if fallback == "folder" else "listing order")
    if fallback == "folder":
        numbers = [int(m.group(1)) for n in names if (m := re.match(r"(\d+)\.", n))]
        if len(numbers) == len(names):
            return numbers
    return list(range(len(names)))


def read_bounding_boxes(cub_dir: Path) -> dict[str, tuple[Box, str]]:
    """``images.txt`` + ``bounding_boxes.txt`` -> key (path without ``.jpg``) -> (box, where)."""
    files: dict[str, str] = {}
    images_txt, boxes_txt = cub_dir / "images.txt", cub_dir / "bounding_boxes.txt"
    for _, parts in _table(images_txt, 2):
        files[parts[0]] = os.path.splitext(parts[1])[0]
    boxes: dict[str, tuple[Box, str]] = {}
    for number, parts in _table(boxes_txt, 5):
        try:
            x, y, w, h = (float(v) for v in parts[1:5])
        except ValueError:
            raise DataError(f"{boxes_txt}:{number}: expected 'id x y w h', got {' '.join(parts)!r}") from None
        if parts[0] not in files:
            raise DataError(f"{boxes_txt}:{number}: image id {parts[0]} is not in {images_txt}")
        boxes[files[parts[0]]] = ((x, y, w, h), f"{boxes_txt.name} line {number}")
    return boxes


def _table(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != columns:
            raise DataError(f"{path}:{number}: expected {columns} fields, got {len(parts)}")
        rows.append((number, parts))
    return rows


class AttnGANLayoutDataset(CaptionImageDataset):
    """Shared logic of AttnGAN's on-disk layouts (filenames.pickle + one text file per
    image). Subclasses say where images and caption files are."""

    default_captions_per_image = 10
    class_fallback = "folder"

    def __init__(self, root: str | os.PathLike[str], split: str = "train", image_sizes: Sequence[int] = (64, 128, 256),
                 max_words: int = 18, train: bool | None = None, seed: int = 0, skip_bad: bool = False,
                 vocab: Vocabulary | None = None, missing: str = "error", captions_per_image: int | None = None,
                 captions_pickle: str | os.PathLike[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, cache_memory_mb: float = 1024) -> None:
        super().__init__(split=split, image_sizes=image_sizes, max_words=max_words, train=train, seed=seed,
                         skip_bad=skip_bad, cache_dir=cache_dir, cache_memory_mb=cache_memory_mb)
        self.root = Path(root)
        self.captions_per_image = captions_per_image or self.default_captions_per_image
        self.setup()
        names = read_filenames(self.root, split)
        class_ids = read_class_ids(self.root, split, names, self.class_fallback)
        present, empty = self._present(names, strict=True)
        self.handle_missing([n for n in names if n not in present and n not in empty], len(names),
                            str(self.root / split / "filenames.pickle"), self.image_root(), missing)
        if captions_pickle is not None:
            pending, picked = self._from_pickle(Path(captions_pickle), names, present, class_ids)
            if vocab is not None and vocab != picked:
                raise ValueError(f"the vocabulary given differs from the one in {captions_pickle}")
            vocab = picked
        else:
            pending = self._read_captions(names, present, class_ids, strict=True)
            if vocab is None:
                other = "test" if split == "train" else "train"
                other_pending = self._other_split_captions(other)
                ordered = (pending, other_pending) if split == "train" else (other_pending, pending)
                vocab = build_vocabulary(t for group in ordered for p in group for t in p.tokens)
        self.finalise(pending, vocab, self.captions_per_image)
        self.num_classes = len({r.class_id for r in self.records})

    # ------------------------------------------------------------------ layout hooks

    def setup(self) -> None:
        """Read per-data-set metadata before the listing."""

    def image_root(self) -> str:
        raise NotImplementedError

    def image_path(self, name: str) -> Path:
        raise NotImplementedError

    def text_path(self, name: str) -> Path:
        return self.root / "text" / f"{name}.txt"

    def make_record(self, name: str, image: Path, class_id: int) -> Record | None:
        return Record(key=name, image=image, class_id=class_id, captions=[])

    # ------------------------------------------------------------------ reading

    def _present(self, names: Sequence[str], strict: bool) -> tuple[dict[str, Path], set[str]]:
        """Listed names whose image exists (stat'ed once), and those whose file is empty
        (bad samples: an error, or skipped with ``skip_bad``)."""
        present: dict[str, Path] = {}
        empty: set[str] = set()
        for name in names:
            path = self.image_path(name)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size == 0:
                empty.add(name)
                if strict and not self.skip_bad:
                    raise DataError(f"{path}: empty image file (0 bytes); pass skip_bad=True to skip it")
                if strict:
                    self.note_skip("empty_image", str(path))
                continue
            present[name] = path
        return present, empty

    def _read_captions(self, names: Sequence[str], present: dict[str, Path], class_ids: Sequence[int],
                       strict: bool) -> list[Pending]:
        """Pending records of the present images; ``strict=False`` reads quietly (for the
        vocabulary of the other split) and drops whatever is unusable."""
        pending = []
        for name, class_id in zip(names, class_ids):
            if name not in present:
                continue
            if strict:
                record = self.make_record(name, present[name], class_id)
            else:
                record = Record(key=name, image=present[name], class_id=class_id, captions=[])
            if record is None:
                continue
            text = self.text_path(name)
            try:
                captions = read_caption_file(text, self.captions_per_image, self.skip_bad or not strict)
            except FileNotFoundError as exc:
                if strict and not self.skip_bad:
                    raise
                if strict:
                    self.note_skip("missing_captions", str(exc))
                continue
            except DataError as exc:
                if strict and not self.skip_bad:
                    raise
                if strict:
                    self.note_skip("too_few_captions", str(exc))
                continue
            if strict:
                for bad in captions.bad:
                    self.note_skip("bad_caption_line", bad)
            pending.append(Pending(record, captions.tokens, [f"{text}:{n}" for n in captions.lines]))
        return pending

    def _other_split_captions(self, split: str) -> list[Pending]:
        try:
            names = read_filenames(self.root, split)
        except FileNotFoundError:
            logger.warning("no %s listing under %s: vocabulary built from the %s split only", split, self.root, self.split)
            return []
        return self._read_captions(names, self._present(names, strict=False)[0], [0] * len(names), strict=False)

    def _from_pickle(self, path: Path, names: Sequence[str], present: dict[str, Path],
                     class_ids: Sequence[int]) -> tuple[list[Pending], Vocabulary]:
        """Captions (token ids) and vocabulary from the original's ``captions.pickle``,
        aligned with ``filenames.pickle`` (``captions_per_image`` consecutive entries each)."""
        train_caps, test_caps, ixtoword, _ = load_captions_pickle(path)
        vocab = Vocabulary.from_index_to_word(ixtoword)
        caps = train_caps if self.split == "train" else test_caps
        per = self.captions_per_image
        if len(caps) != len(names) * per:
            raise DataError(f"{path}: {len(caps)} {self.split} captions, expected {len(names)} listed images x {per}")
        pending = []
        for k, (name, class_id) in enumerate(zip(names, class_ids)):
            if name not in present:
                continue
            record = self.make_record(name, present[name], class_id)
            if record is None:
                continue
            tokens, where = [], []
            for j in range(k * per, (k + 1) * per):
                ids = [int(i) for i in caps[j]]
                if any(not 0 <= i < len(vocab) for i in ids):
                    raise DataError(f"{path}: {self.split} caption {j} has an id outside the vocabulary")
                tokens.append([vocab.words[i] for i in ids])
                where.append(f"{path}: {self.split} caption {j} ({name})")
            pending.append(Pending(record, tokens, where))
        return pending, vocab


class CubDataset(AttnGANLayoutDataset):
    """CUB birds (AttnGAN layout), images cropped around their bounding boxes.

    Args:
        root: the folder holding ``CUB_200_2011/``, ``text/``, ``train/`` and ``test/``.
        split: ``"train"`` or ``"test"`` (AttnGAN's class-disjoint lists).
        image_sizes: stage sizes, e.g. ``(64, 128, 256)``.
        max_words: caption length cap (the original's ``WORDS_NUM``, 18).
        train: augmentation and random captions (default: ``split == "train"``).
        seed: base of the per-item generators.
        skip_bad: skip and count unusable samples instead of raising.
        vocab: vocabulary; default: built from the train then test captions of the present
            images, words in order of first appearance.
        missing: ``"error"`` (default) or ``"skip"`` for listed images absent on disk
            (a partial download); the skipped names end up in ``missing``.
        captions_per_image: 10 for CUB.
        captions_pickle: the original's ``captions.pickle``: its vocabulary and token ids
            are used instead of the text files.
        use_bbox: crop around the bounding box (as the original for birds).
        cache_dir: where decoded images are kept as ``.npy`` files between runs.
        cache_memory_mb: in-memory cache budget (per process).
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", image_sizes: Sequence[int] = (64, 128, 256),
                 max_words: int = 18, train: bool | None = None, seed: int = 0, skip_bad: bool = False,
                 vocab: Vocabulary | None = None, missing: str = "error", captions_per_image: int | None = None,
                 captions_pickle: str | os.PathLike[str] | None = None, use_bbox: bool = True,
                 cache_dir: str | os.PathLike[str] | None = None, cache_memory_mb: float = 1024) -> None:
        self.use_bbox = use_bbox
        super().__init__(root, split, image_sizes, max_words, train, seed, skip_bad, vocab, missing,
                         captions_per_image, captions_pickle, cache_dir, cache_memory_mb)

    def setup(self) -> None:
        self.cub_dir = self.root / "CUB_200_2011"
        self.boxes = read_bounding_boxes(self.cub_dir) if self.use_bbox else {}

    def image_root(self) -> str:
        return str(self.cub_dir / "images")

    def image_path(self, name: str) -> Path:
        return self.cub_dir / "images" / f"{name}.jpg"

    def make_record(self, name: str, image: Path, class_id: int) -> Record | None:
        record = Record(key=name, image=image, class_id=class_id, captions=[])
        if not self.use_bbox:
            return record
        if name not in self.boxes:
            message = f"{name}: no bounding box in {self.cub_dir / 'bounding_boxes.txt'}"
            if not self.skip_bad:
                raise DataError(message + "; pass skip_bad=True to skip it or use_bbox=False")
            self.note_skip("no_bbox", message)
            return None
        record.box, record.box_where = self.boxes[name]
        return record


__all__ = ["CubDataset", "AttnGANLayoutDataset", "read_bounding_boxes", "read_class_ids", "read_filenames", "SPLITS"]
