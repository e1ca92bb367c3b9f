"""Shared pieces of the data sets: errors, image decoding and transforms, the decoded-image
cache, caption files and ``collate`` (the factory is :mod:`attngan.data.registry`).

Image pipeline (as the original AttnGAN): the decoded (and, for CUB, bounding-box cropped)
image is resized so that its short edge is the *load size* -- ``int(S * 76 / 64)`` in
training mode, ``S`` in evaluation mode, ``S`` being the largest stage size -- then an
``S x S`` window is cut (random + random horizontal flip in training, centred otherwise).
Smaller stages are bilinear (antialiased) resizes of that window. Pixels map to [-1, 1].
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from ..files import atomic_file
from ..text import tokenize
from .types import Batch

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
LOAD_SCALE = 76 / 64  # the original's upscale before the random crop


class DataError(ValueError):
    """A data file is unusable; the message names the file (and line) at fault."""


class MissingImagesError(DataError, FileNotFoundError):
    """Images named by a listing are not on disk (for example a partial download)."""


# --------------------------------------------------------------------------- images


def check_image_sizes(image_sizes: Sequence[int]) -> tuple[int, ...]:
    """Validate stage sizes; returns them sorted ascending, e.g. ``(64, 128, 256)``."""
    sizes = tuple(sorted(int(s) for s in image_sizes))
    if not sizes or sizes[0] < 1 or len(set(sizes)) != len(sizes):
        raise ValueError(f"image_sizes must be distinct positive ints, got {tuple(image_sizes)}")
    return sizes


def load_size(image_size: int, train: bool) -> int:
    """Short edge the decoded image is resized to before cropping ``image_size``."""
    return int(image_size * LOAD_SCALE) if train else image_size


def open_rgb(path: str | os.PathLike[str], exif_transpose: bool = False) -> Image.Image:
    """Fully decode an image file as RGB.

    Greyscale, palette, CMYK and 16-bit images are converted; transparent pixels are
    composited over white. Raises :class:`DataError` naming the file for empty, truncated
    or unrecognised files and ``FileNotFoundError`` for absent ones.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty image file (0 bytes)")
        with Image.open(path) as img:
            img.load()
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot decode image ({exc})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB version of any PIL image; alpha is composited over white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 / 65535.0 if arr.max(initial=0) > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def bbox_crop_region(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """The original's crop around a CUB bounding box ``(x, y, w, h)``: a square of side
    ``2 * int(0.75 * max(w, h))`` centred on the box, clipped to the image.

    Returns ``(x1, y1, x2, y2)``; raises ``ValueError`` when nothing of it is inside.
    """
    x, y, w, h = box
    r = int(max(w, h) * 0.75)
    cx = int((2 * x + w) / 2)
    cy = int((2 * y + h) / 2)
    y1, y2 = max(0, cy - r), min(height, cy + r)
    x1, x2 = max(0, cx - r), min(width, cx + r)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"bounding box {tuple(box)} lies outside the {width}x{height} image")
    return x1, y1, x2, y2


def resize_short_edge(img: Image.Image, size: int) -> Image.Image:
    """``torchvision.transforms.Resize(size)`` on a PIL image: short edge -> ``size``."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return img
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    return img.resize((new_w, new_h), Image.Resampling.BILINEAR)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, H, W]`` float32 in [-1, 1]."""
    chw = array.transpose(2, 0, 1).astype(np.float32, order="C")  # numpy: no thread pool per image
    chw /= 127.5
    chw -= 1.0
    return torch.from_numpy(chw)


def stage_tensors(square: np.ndarray | Image.Image, image_sizes: Sequence[int]) -> list[torch.Tensor]:
    """A square ``[S, S, 3]`` image (S = largest size) -> one ``[3, s, s]`` tensor per size."""
    pil = square if isinstance(square, Image.Image) else None
    array = np.asarray(square)
    out = []
    for s in image_sizes:
        if s == array.shape[0]:
            out.append(to_tensor(array))
        else:
            pil = pil or Image.fromarray(array)
            out.append(to_tensor(np.asarray(pil.resize((s, s), Image.Resampling.BILINEAR))))
    return out


def image_tensors(image: np.ndarray, image_sizes: Sequence[int], train: bool,
                  rng: np.random.Generator | None) -> list[torch.Tensor]:
    """Crop the largest stage from ``image`` (``[H, W, 3]`` uint8 at the load size) and make
    every stage: random crop + horizontal flip when ``train`` (draws from ``rng``), centre
    crop otherwise. Returns ``[3, s, s]`` tensors in [-1, 1], ascending sizes."""
    size = max(image_sizes)
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image {w}x{h} is smaller than the {size}px crop")
    if train:
        if rng is None:
            raise ValueError("training-mode crops need a random generator")
        top = int(rng.integers(0, h - size + 1))
        left = int(rng.integers(0, w - size + 1))
        flip = bool(rng.random() < 0.5)
    else:
        top, left, flip = int(round((h - size) / 2.0)), int(round((w - size) / 2.0)), False
    crop = image[top:top + size, left:left + size]
    if flip:
        crop = crop[:, ::-1]
    return stage_tensors(np.ascontiguousarray(crop), sorted(image_sizes))


# --------------------------------------------------------------------------- cache


class ImageCache:
    """Decoded images at their load size, in memory (up to ``memory_mb``) and optionally as
    ``.npy`` files under ``cache_dir`` keyed by a hash of (path, mtime, size, load size, crop).

    Each DataLoader worker holds its own memory cache; fill it before forking with
    ``dataset.preload()``, keep workers alive (``persistent_workers=True``) or give a
    ``cache_dir`` so decoding happens once.
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None, memory_mb: float = 1024) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.memory_limit = int(memory_mb * 2**20)
        self.memory_used = 0
        self._memory: dict[tuple, np.ndarray] = {}
        self._full_logged = False

    def __len__(self) -> int:
        return len(self._memory)

    def get(self, path: Path, load: int, extra: Any, decode: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array for (path, load, extra) or ``decode()``'s result, cached."""
        key = (str(path), load, extra)
        array = self._memory.get(key)
        if array is not None:
            return array
        file = self._disk_path(path, load, extra) if self.cache_dir is not None else None
        if file is not None and file.exists():
            try:
                array = np.load(file)
            except (OSError, ValueError) as exc:
                logger.warning("ignoring unreadable cache file %s (%s)", file, exc)
        if array is None:
            array = decode()
            if file is not None:
                self._write(file, array)
        self._remember(key, array)
        return array

    def _disk_path(self, path: Path, load: int, extra: Any) -> Path:
        st = path.stat()
        ident = repr((str(path.resolve()), st.st_mtime_ns, st.st_size, load, extra))
        digest = hashlib.sha1(ident.encode()).hexdigest()[:24]
        assert self.cache_dir is not None  # called only with a disk cache
        return self.cache_dir / f"{digest}.npy"

    @staticmethod
    def _write(file: Path, array: np.ndarray) -> None:
        try:
            with atomic_file(file, durable=False) as f:  # a cache: rebuilt if lost
                np.save(f, array)
        except OSError as exc:
            logger.warning("cannot write cache file %s (%s)", file, exc)

    def _remember(self, key: tuple, array: np.ndarray) -> None:
        if self.memory_used + array.nbytes > self.memory_limit:
            if not self._full_logged:
                logger.info("image memory cache full (%d images, %.0f MiB)", len(self._memory), self.memory_used / 2**20)
                self._full_logged = True
            return
        self._memory[key] = array
        self.memory_used += array.nbytes


# --------------------------------------------------------------------------- captions


@dataclass
class CaptionFile:
    """Usable captions of one file: tokens and their 1-based line numbers."""

    path: Path
    tokens: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # "file:line: reason" of skipped lines


def read_caption_file(path: Path, count: int | None, skip_bad: bool) -> CaptionFile:
    """The first ``count`` (all if None) captions of a one-caption-a-line UTF-8 file.

    Captions never leave their file: blank lines and lines without an ASCII word are errors
    naming the file and line (``skip_bad=False``) or are skipped and listed in ``bad``.
    Trailing blank lines are ignored. Raises :class:`DataError` when fewer than ``count``
    usable captions remain, and ``FileNotFoundError`` when the file is absent.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"caption file not found: {path}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not skip_bad:
            raise DataError(f"{path}: not UTF-8 (byte {exc.start}); pass skip_bad=True to drop such bytes") from None
        text = raw.decode("utf-8", errors="replace")
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    result = CaptionFile(path)
    for number, line in enumerate(lines, start=1):
        if count is not None and len(result.tokens) == count:
            break
        tokens = tokenize(line)
        if tokens:
            result.tokens.append(tokens)
            result.lines.append(number)
            continue
        reason = "empty line" if not line.strip() else f"no ASCII word in {line.strip()[:40]!r}"
        if not skip_bad:
            raise DataError(f"{path}:{number}: {reason}; fix the file or pass skip_bad=True to skip such lines")
        result.bad.append(f"{path}:{number}: {reason}")
    if count is not None and len(result.tokens) < count:
        extra = f" ({len(result.bad)} unusable line(s) skipped)" if result.bad else ""
        raise DataError(f"{path}: {len(result.tokens)} usable captions, {count} required{extra}")
    return result


# --------------------------------------------------------------------------- batches


def collate(samples: Sequence[dict[str, Any]]) -> Batch:
    """Batch items (order kept): ``images`` list of ``[B, 3, s, s]``, ``tokens [B, T]``
    int64 (T = longest caption of the batch), ``lengths [B]``, ``class_ids [B]``,
    ``caption_indices [B]`` (int64), ``keys`` list of str and, when the items have them,
    ``attributes [B, K]`` int64, counterfactual captions ``negatives [B, K, T]`` with
    ``negative_lengths [B, K]``, and rounded negatives ``rounded_images [B, 3, S, S]`` with
    ``rounded_valid [B]`` bool (:mod:`attngan.data.shapes_rounded`)."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    lengths = torch.tensor([int(s["length"]) for s in samples], dtype=torch.int64)
    width = int(lengths.max())
    batch: Batch = {
        "images": [torch.stack([s["images"][k] for s in samples]) for k in range(len(samples[0]["images"]))],
        "tokens": torch.stack([s["tokens"][:width] for s in samples]),
        "lengths": lengths,
        "class_ids": torch.tensor([int(s["class_id"]) for s in samples], dtype=torch.int64),
        "caption_indices": torch.tensor([int(s["caption_index"]) for s in samples], dtype=torch.int64),
        "keys": [s["key"] for s in samples],
    }
    if "attributes" in samples[0]:
        batch["attributes"] = torch.stack([s["attributes"] for s in samples])
    if "negatives" in samples[0]:  # counterfactual captions [B, K, T] and their lengths [B, K]
        batch["negatives"] = torch.stack([s["negatives"] for s in samples])
        batch["negative_lengths"] = torch.stack([s["negative_lengths"] for s in samples])
    if "rounded_images" in samples[0]:  # rounded negatives [B, 3, S, S] and which of them exist [B]
        batch["rounded_images"] = torch.stack([s["rounded_images"] for s in samples])
        batch["rounded_valid"] = torch.stack([s["rounded_valid"] for s in samples])
    return batch


class ItemExtras(Dataset):
    """Base of the wrappers that add fields to another data set's items (counterfactual captions,
    rounded negatives): its length, epoch and every other attribute are the wrapped set's."""

    dataset: Any
    epoch: int = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
