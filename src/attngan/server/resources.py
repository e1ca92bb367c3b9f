"""The server's in-memory resources: the image cache, the page files, the model summary."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..config import ModelConfig
from ..inference.pipeline import AttnGANPipeline
from .errors import ApiError

_MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}


class PngStore:
    """Bounded LRU of PNG bytes by random hex id (by count and by total bytes)."""

    def __init__(self, max_items: int = 1024, max_bytes: int = 128 * 2**20) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its new id (32 lowercase hex digits)."""
        image_id = secrets.token_hex(16)
        with self._lock:
            self._items[image_id] = data
            self._bytes += len(data)
            while self._items and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)
        return image_id

    def get(self, image_id: str) -> bytes | None:
        with self._lock:
            data = self._items.get(image_id)
            if data is not None:
                self._items.move_to_end(image_id)
            return data


@dataclass(frozen=True)
class StaticFile:
    data: bytes
    media_type: str


class StaticFiles:
    """The page files, read once from the package: a request can only pick one of them by name."""

    def __init__(self, files: dict[str, StaticFile]) -> None:
        self.files = files

    @classmethod
    def load(cls) -> StaticFiles:
        folder = resources.files("attngan.server") / "static"
        files = {}
        for entry in folder.iterdir():
            suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
            if entry.is_file() and suffix in _MEDIA_TYPES:
                files[entry.name] = StaticFile(entry.read_bytes(), _MEDIA_TYPES[suffix])
        return cls(files)

    def get(self, name: str) -> StaticFile:
        item = self.files.get(name)
        if item is None:
            raise ApiError(404, "not_found", "not found")
        return item


def stage_sizes(config: ModelConfig) -> tuple[list[int], list[int]]:
    """Image size of every stage and attention-map size of every refinement stage."""
    g = config.generator
    inputs = [g.first_stage_size * 2**i for i in range(g.num_stages)]
    sizes = inputs if g.variant != "dcgan" else [inputs[-1]]
    return sizes, inputs[:-1]


def architecture(config: ModelConfig, has_damsm: bool) -> dict[str, Any]:
    """The sizes the explain page states before any run (``ModelInfo.architecture``)."""
    text, g = config.text_encoder, config.generator
    image = config.image_encoder if has_damsm else None
    return {"rnn": text.rnn_type, "bidirectional": text.bidirectional, "word_embedding_dim": text.word_embedding_dim,
            "text_dim": g.text_dim, "condition_dim": g.condition_dim, "noise_dim": g.noise_dim,
            "channels": g.channels, "variant": g.variant, "damsm": has_damsm,
            "image_encoder": image.kind if image is not None else None}


def model_info(pipeline: AttnGANPipeline, max_images: int) -> dict[str, Any]:
    """The summary ``GET /v1/model`` returns (``example_captions``: the model's own, for the page)."""
    sizes, attention = stage_sizes(pipeline.config)
    return {"name": pipeline.name, "hash": pipeline.model_hash, "stages": pipeline.num_stages, "sizes": sizes,
            "attention_sizes": attention, "vocabulary_size": len(pipeline.vocab),
            "max_words": pipeline.config.text_encoder.max_words, "max_images": max_images,
            "device": str(pipeline.device), "precision": str(pipeline.precision),
            "example_captions": pipeline.example_captions, "truncation": pipeline.truncation,
            "candidates": pipeline.candidates,
            "architecture": architecture(pipeline.config, pipeline.bundle.image_encoder is not None)}
