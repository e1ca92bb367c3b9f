"""MS-COCO captions, in AttnGAN's layout or straight from the official annotations.

AttnGAN layout (``CocoDataset``)::

    <root>/images/<name>.jpg   (or <root>/train2014/, <root>/val2014/ by the name's prefix)
    <root>/text/<name>.txt     (5 captions, one a line)
    <root>/{train,test}/filenames.pickle   [class_info.pickle optional; else id = index]

Official layout (``CocoJsonDataset``): ``<root>/annotations/captions_train2014.json`` (or
``captions_val2014.json`` for ``split="test"``, as AttnGAN's test set) and the images in
``<root>/train2014/`` / ``<root>/val2014/``. Captions are grouped by ``image_id`` (in
annotation id order); images are ordered by id and their class id is that index.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..text import Vocabulary, tokenize
from .base import CaptionImageDataset, Pending, Record, build_vocabulary
from .common import DataError
from .cub import AttnGANLayoutDataset

logger = logging.getLogger(__name__)

OFFICIAL_SUBSETS = {"train": "train2014", "test": "val2014"}


class CocoDataset(AttnGANLayoutDataset):
    """COCO in AttnGAN's ``data/coco`` layout; arguments as :class:`~attngan.data.CubDataset`
    (no bounding boxes, 5 captions per image)."""

    default_captions_per_image = 5
    class_fallback = "index"

    def setup(self) -> None:
        self.images_dir = self.root / "images" if (self.root / "images").is_dir() else None

    def image_root(self) -> str:
        return str(self.images_dir or self.root)

    def image_path(self, name: str) -> Path:
        if self.images_dir is not None:
            return self.images_dir / f"{name}.jpg"
        match = re.match(r"COCO_(train|val)2014_", name)
        folder = f"{match.group(1)}2014" if match else OFFICIAL_SUBSETS[self.split]
        return self.root / folder / f"{name}.jpg"


def read_coco_json(path: Path) -> tuple[list[tuple[int, str]], dict[int, list[tuple[int, str]]]]:
    """Official captions file -> ([(image id, file name)] sorted by id,
    {image id: [(annotation id, caption)] sorted by annotation id})."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"COCO annotations not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: expected an object with 'images' and 'annotations' lists")
    images = []
    for k, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int) \
                or not isinstance(entry.get("file_name"), str):
            raise DataError(f"{path}: images[{k}] needs an integer 'id' and a string 'file_name'")
        images.append((entry["id"], entry["file_name"]))
    captions: dict[int, list[tuple[int, str]]] = {}
    for k, entry in enumerate(data["annotations"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("image_id"), int) \
                or not isinstance(entry.get("caption"), str):
            raise DataError(f"{path}: annotations[{k}] needs an integer 'image_id' and a string 'caption'")
        captions.setdefault(entry["image_id"], []).append((int(entry.get("id", k)), entry["caption"]))
    for group in captions.values():
        group.sort()
    return sorted(images), captions


class CocoJsonDataset(CaptionImageDataset):
    """COCO from the official ``captions_*.json`` and image folders.

    Arguments as :class:`~attngan.data.CubDataset`, plus ``annotations`` (path of the JSON
    file) and ``image_dir`` to override the defaults derived from ``root`` and ``split``.
    Images with more captions use the first ``captions_per_image`` (5) by annotation id.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", image_sizes: Sequence[int] = (64, 128, 256),
                 max_words: int = 18, train: bool | None = None, seed: int = 0, skip_bad: bool = False,
                 vocab: Vocabulary | None = None, missing: str = "error", captions_per_image: int = 5,
                 annotations: str | os.PathLike[str] | None = None, image_dir: str | os.PathLike[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, cache_memory_mb: float = 1024) -> None:
        super().__init__(split=split, image_sizes=image_sizes, max_words=max_words, train=train, seed=seed,
                         skip_bad=skip_bad, cache_dir=cache_dir, cache_memory_mb=cache_memory_mb)
        self.root = Path(root)
        self.captions_per_image = captions_per_image
        json_path = Path(annotations) if annotations else self._default_json(split)
        folder = Path(image_dir) if image_dir else self.root / OFFICIAL_SUBSETS[split]
        images, captions = read_coco_json(json_path)
        absent = [name for _, name in images if not (folder / name).exists()]
        self.handle_missing(absent, len(images), str(json_path), str(folder), missing)
        absent_set = set(absent)
        pending = []
        for index, (image_id, name) in enumerate(images):
            if name in absent_set:
                continue
            record = Record(key=os.path.splitext(name)[0], image=folder / name, class_id=index, captions=[])
            item = self._pending(record, captions.get(image_id, []), json_path, image_id, strict=True)
            if item is not None:
                pending.append(item)
        if vocab is None:
            other = self._other_split(json_path)
            ordered = (pending, other) if split == "train" else (other, pending)
            vocab = build_vocabulary(t for group in ordered for p in group for t in p.tokens)
        self.finalise(pending, vocab, captions_per_image)
        self.num_classes = len(self.records)

    def _default_json(self, split: str) -> Path:
        return self.root / "annotations" / f"captions_{OFFICIAL_SUBSETS[split]}.json"

    def _pending(self, record: Record, captions: list[tuple[int, str]], path: Path, image_id: int,
                 strict: bool) -> Pending | None:
        tokens: list[list[str]] = []
        where: list[str] = []
        for annotation_id, caption in captions:
            if len(tokens) == self.captions_per_image:
                break
            words = tokenize(caption)
            label = f"{path}: annotation {annotation_id} (image {image_id})"
            if words:
                tokens.append(words)
                where.append(label)
            elif strict and not self.skip_bad:
                raise DataError(f"{label}: caption {caption[:40]!r} has no ASCII word; pass skip_bad=True to skip it")
            elif strict:
                self.note_skip("bad_caption_line", label)
        if len(tokens) < self.captions_per_image:
            message = f"{path}: image {image_id} has {len(tokens)} usable captions, {self.captions_per_image} required"
            if strict and not self.skip_bad:
                raise DataError(message)
            if strict:
                self.note_skip("too_few_captions", message)
            return None
        return Pending(record, tokens, where)

    def _other_split(self, json_path: Path) -> list[Pending]:
        other = "test" if self.split == "train" else "train"
        path = self._default_json(other)
        if path == json_path or not path.exists():
            logger.warning("no %s annotations at %s: vocabulary built from %s only", other, path, json_path)
            return []
        images, captions = read_coco_json(path)
        dummy = Record(key="", image=None, class_id=0, captions=[])
        found = (self._pending(dummy, captions.get(i, []), path, i, strict=False) for i, _ in images)
        return [p for p in found if p is not None]
