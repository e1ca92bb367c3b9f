"""A plain folder of captioned images, in one of three forms (checked in this order):

- ``captions.jsonl``: one object a line, ``{"image": "rel/path.jpg", "caption": "..."}``
  or ``"captions": ["...", ...]``, optionally ``"split": "train" | "test"``;
- ``captions.csv``: a header with columns ``image,caption`` (and optionally ``split``);
  an image may have several rows;
- otherwise every ``name.jpg|jpeg|png|webp|bmp`` (recursively) with a ``name.txt`` beside
  it holding one caption a line.

Without a split field an image is in the test split when a hash of its relative path
falls below ``test_fraction`` (deterministic, stable when files are added). Class id: the
image's index among all images sorted by path, so an image is never its own negative.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..text import Vocabulary, tokenize
from .base import SPLITS, CaptionImageDataset, Pending, Record, build_vocabulary
from .common import IMAGE_EXTENSIONS, DataError, read_caption_file

logger = logging.getLogger(__name__)


def hash_split(name: str, test_fraction: float) -> str:
    """``"test"`` for a deterministic ``test_fraction`` of names, else ``"train"``."""
    value = int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return "test" if value < test_fraction else "train"


@dataclass
class _Entry:
    image: str  # relative path
    tokens: list[list[str]] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    split: str | None = None


class FolderDataset(CaptionImageDataset):
    """Captioned images from a folder (see the module doc for the accepted forms).

    Arguments as :class:`~attngan.data.CubDataset` plus ``test_fraction`` (default 0.1).
    Images may have any number of captions; ``captions_per_image`` (if given) keeps at most
    that many, and afterwards holds the largest count.
    The default vocabulary holds the train then test captions in order of appearance.
    """

    exif_transpose = True

    def __init__(self, root: str | os.PathLike[str], split: str = "train", image_sizes: Sequence[int] = (64, 128, 256),
                 max_words: int = 18, train: bool | None = None, seed: int = 0, skip_bad: bool = False,
                 vocab: Vocabulary | None = None, missing: str = "error", test_fraction: float = 0.1,
                 captions_per_image: int | None = None, cache_dir: str | os.PathLike[str] | None = None, cache_memory_mb: float = 1024) -> None:
        super().__init__(split=split, image_sizes=image_sizes, max_words=max_words, train=train, seed=seed,
                         skip_bad=skip_bad, cache_dir=cache_dir, cache_memory_mb=cache_memory_mb)
        if not 0.0 <= test_fraction <= 1.0:
            raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if (self.root / "captions.jsonl").exists():
            entries, listing = self._read_jsonl(self.root / "captions.jsonl"), "captions.jsonl"
        elif (self.root / "captions.csv").exists():
            entries, listing = self._read_csv(self.root / "captions.csv"), "captions.csv"
        else:
            entries, listing = self._scan(), None
        for entry in entries:
            entry.split = entry.split or hash_split(entry.image, test_fraction)
        if listing is not None:
            absent = [e.image for e in entries if e.split == split and not (self.root / e.image).is_file()]
            self.handle_missing(absent, sum(e.split == split for e in entries), str(self.root / listing),
                                str(self.root), missing)
            skip = set(absent)
            entries = [e for e in entries if e.image not in skip]
        pending: dict[str, list[Pending]] = {s: [] for s in SPLITS}
        for class_id, entry in enumerate(entries):
            path = self.root / entry.image
            if entry.split == split and path.stat().st_size == 0:
                if not self.skip_bad:
                    raise DataError(f"{path}: empty image file (0 bytes); pass skip_bad=True to skip it")
                self.note_skip("empty_image", str(path))
                continue
            record = Record(key=os.path.splitext(entry.image)[0], image=path, class_id=class_id, captions=[])
            pending[entry.split or "train"].append(Pending(record, entry.tokens, entry.where))
        if vocab is None:
            vocab = build_vocabulary(t for s in SPLITS for p in pending[s] for t in p.tokens)
        if not pending[split]:
            raise DataError(f"{self.root}: the {split} split is empty ({len(entries)} images in all)")
        self.finalise(pending[split], vocab, None)
        if captions_per_image is not None:
            for record in self.records:
                del record.captions[captions_per_image:]
        self.captions_per_image = max(len(r.captions) for r in self.records)
        self.num_classes = len(entries)

    # ------------------------------------------------------------------ readers

    def _bad(self, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message + "; fix it or pass skip_bad=True to skip it")
        self.note_skip("bad_caption_line", message)

    def _add(self, entries: dict[str, _Entry], image: str, captions: list[str], split: object, where: str) -> None:
        image = image.replace("\\", "/").removeprefix("./")
        if split not in (None, "", *SPLITS):
            raise DataError(f"{where}: split must be 'train' or 'test', got {split!r}")
        entry = entries.setdefault(image, _Entry(image))
        if split and entry.split and split != entry.split:
            raise DataError(f"{where}: {image} is in both the {entry.split} and the {split} split")
        entry.split = entry.split or (split or None)
        for caption in captions:
            tokens = tokenize(caption)
            if tokens:
                entry.tokens.append(tokens)
                entry.where.append(where)
            else:
                self._bad(f"{where}: caption {caption[:40]!r} has no ASCII word")

    def _read_jsonl(self, path: Path) -> list[_Entry]:
        entries: dict[str, _Entry] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("image"), str):
                raise DataError(f"{where}: expected an object with a string 'image'")
            captions = row.get("captions", [row["caption"]] if "caption" in row else None)
            if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
                raise DataError(f"{where}: expected a string 'caption' or a list of strings 'captions'")
            self._add(entries, row["image"], captions, row.get("split"), where)
        return [entries[k] for k in sorted(entries)]

    def _read_csv(self, path: Path) -> list[_Entry]:
        entries: dict[str, _Entry] = {}
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = set(reader.fieldnames or ())
            if not {"image", "caption"} <= fields:
                raise DataError(f"{path}: the header must name the columns 'image' and 'caption'")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                self._add(entries, row["image"] or "", [row["caption"] or ""], row.get("split"), where)
        return [entries[k] for k in sorted(entries)]

    def _scan(self) -> list[_Entry]:
        entries = []
        images = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        for image in images:
            text = image.with_suffix(".txt")
            rel = image.relative_to(self.root).as_posix()
            try:
                captions = read_caption_file(text, None, self.skip_bad)
            except FileNotFoundError:
                if not self.skip_bad:
                    raise DataError(f"{image}: no caption file {text.name} beside it; pass skip_bad=True to skip it") from None
                self.note_skip("missing_captions", str(text))
                continue
            for bad in captions.bad:
                self.note_skip("bad_caption_line", bad)
            entries.append(_Entry(rel, captions.tokens, [f"{text}:{n}" for n in captions.lines]))
        if not entries:
            raise DataError(f"{self.root}: no captioned image (expected captions.jsonl, captions.csv or name.jpg + name.txt)")
        return entries
