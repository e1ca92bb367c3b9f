"""A registry of named metrics, the context they read, and a JSONL results log.

A metric is a function ``fn(context) -> dict`` with at least ``values`` (a mapping of
numbers), ``label`` (what the number is, e.g. which Inception network) and
``feature_extractor`` (the exact network and weights hash, or ``None``). :meth:`MetricRegistry.compute`
adds the run's identity (model, data set, seed, sample count, time, library versions) and
returns one record; :func:`append_jsonl` appends it as one line of a ``.jsonl`` file.

The built-in metrics live in :mod:`attngan.metrics.builtin` and are registered in
``DEFAULT_REGISTRY`` when the package is imported. Build a separate :class:`MetricRegistry`
for custom metric sets that should not touch it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .classifier import AttributeClassifier
from .fid import FeatureStats, cached_reference_stats, compute_stats
from .r_precision import CaptionPool

logger = logging.getLogger(__name__)

MetricFn = Callable[["MetricContext"], dict[str, Any]]
VERSIONED_PACKAGES = ("attngan", "torch", "torchvision", "numpy", "scipy", "safetensors", "torch-fidelity")


def final_images(batch: Any) -> torch.Tensor:
    """The last-stage images ``[B, 3, S, S]`` of a batch: a tensor, a per-stage list, or a mapping with ``images``."""
    if isinstance(batch, Mapping):
        batch = batch["images"]
    if isinstance(batch, (list, tuple)):
        batch = batch[-1]
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
        raise ValueError("expected image batches [B, 3, S, S] (or per-stage lists / mappings with 'images')")
    return batch


@dataclass
class MetricContext:
    """What metrics read. Fields a metric does not need may stay ``None``.

    Attributes:
        generated: returns a fresh iterable of generated batches, each a mapping with
            ``images`` (``[B, 3, S, S]`` in [-1, 1], or a per-stage list), ``tokens`` ``[B, T]``,
            ``lengths`` ``[B]``, ``class_ids`` ``[B]`` and, for attribute accuracy,
            ``attributes`` ``[B, K]`` of the captions the images came from.
        real_images: returns a fresh iterable of real image batches ``[B, 3, S, S]`` in [-1, 1]
            (or mappings / per-stage lists) for reference statistics.
        dataset: description of the real set (name, split, resolution); part of the cache key.
        num_samples: cap on generated images (None: all that ``generated`` yields).
        num_reference: cap on real images for the reference statistics.
        inception_weights: local ``pt_inception-2015-12-05-6726825d.pth`` (FID / IS).
        torchvision_inception_weights: local torchvision ``inception_v3_google-*.pth`` (PyTorch FID).
        cache_dir: where reference statistics are cached (None: no cache).
        options: per-metric settings, e.g. ``is_splits``, ``r_distractors``, ``r_folds``.
    """

    generated: Callable[[], Iterable[Any]] | None = None
    real_images: Callable[[], Iterable[Any]] | None = None
    dataset: str | dict[str, Any] = ""
    model_name: str = ""
    model_hash: str = ""
    generation: dict[str, Any] = field(default_factory=dict)  # the pipeline's settings (precision, backend...)
    seed: int = 0
    num_samples: int | None = None
    num_reference: int | None = None
    inception_weights: str | os.PathLike[str] | None = None
    torchvision_inception_weights: str | os.PathLike[str] | None = None
    image_encoder: nn.Module | None = None
    text_encoder: nn.Module | None = None
    captions: CaptionPool | None = None
    classifier: AttributeClassifier | None = None
    cache_dir: str | os.PathLike[str] | None = None
    device: str | torch.device = "cpu"
    options: dict[str, Any] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def require(self, name: str, metric: str) -> Any:
        """The field ``name``, or a ValueError saying which metric needs it."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"metric {metric!r} needs MetricContext.{name}")
        return value

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """A value shared by the metrics of this context (loaded networks, generated features)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def generated_batches(self, metric: str) -> Iterable[Mapping[str, Any]]:
        """Generated batches, cut to ``num_samples`` images in total."""
        source = self.require("generated", metric)
        done = 0
        for batch in source():
            if self.num_samples is not None and done >= self.num_samples:
                return
            if self.num_samples is not None:
                keep = self.num_samples - done
                batch = _truncate(batch, keep)
            done += final_images(batch).shape[0]
            yield batch

    def generated_features(self, extractor: Any, metric: str, with_logits: bool = False
                           ) -> tuple[FeatureStats, torch.Tensor | None]:
        """Statistics (and, for Inception networks, logits ``[N, K]``) of the generated images' features."""
        def make() -> tuple[FeatureStats, torch.Tensor | None]:
            stats: FeatureStats | None = None
            logits: list[torch.Tensor] = []
            for batch in self.generated_batches(metric):
                images = final_images(batch)
                if hasattr(extractor, "features_and_logits"):
                    feats, lg = extractor.features_and_logits(images)
                    logits.append(lg.cpu())
                else:
                    feats = extractor.features(images)
                if stats is None:
                    stats = FeatureStats(feats.shape[1], {"extractor": extractor.identity})
                stats.update(feats)
            if stats is None or stats.num_samples < 2:
                raise ValueError(f"metric {metric!r} needs at least 2 generated images")
            return stats, (torch.cat(logits) if logits else None)

        stats, logits = self.memo(f"generated:{extractor.identity}", make)
        if with_logits and logits is None:
            raise ValueError(f"{extractor.identity} gives no class logits")
        return stats, logits

    def reference_stats(self, extractor: Any, metric: str) -> FeatureStats:
        """Statistics of the real images' features; ``real_images`` is only read when they are not cached."""
        def compute() -> FeatureStats:
            batches = (final_images(b) for b in self.require("real_images", metric)())
            return compute_stats(extractor.features, batches, {"extractor": extractor.identity}, self.num_reference)

        settings = {"num_reference": self.num_reference}
        return self.memo(f"reference:{extractor.identity}", lambda: cached_reference_stats(
            compute, self.dataset, settings, extractor.identity, self.cache_dir))


def _truncate(batch: Any, keep: int) -> Any:
    """The first ``keep`` samples of a batch (per-sample tensors and lists are cut, other values kept)."""
    if not isinstance(batch, Mapping):
        return [s[:keep] for s in batch] if isinstance(batch, (list, tuple)) else batch[:keep]
    n = final_images(batch).shape[0]
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key == "images" and isinstance(value, (list, tuple)):
            out[key] = [stage[:keep] for stage in value]
        elif isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
            out[key] = value[:keep]
        elif isinstance(value, list) and len(value) == n:
            out[key] = value[:keep]
        else:
            out[key] = value
    return out


class MetricRegistry:
    """Named metric functions (``fn(context) -> dict``)."""

    def __init__(self) -> None:
        self._metrics: dict[str, MetricFn] = {}

    def register_metric(self, name: str) -> Callable[[MetricFn], MetricFn]:
        """Decorator registering ``fn`` under ``name`` (a name can be registered once)."""
        def decorator(fn: MetricFn) -> MetricFn:
            if name in self._metrics:
                raise ValueError(f"metric {name!r} is already registered")
            self._metrics[name] = fn
            return fn
        return decorator

    def names(self) -> list[str]:
        return sorted(self._metrics)

    def copy(self) -> MetricRegistry:
        out = MetricRegistry()
        out._metrics = dict(self._metrics)
        return out

    def compute(self, name: str, context: MetricContext) -> dict[str, Any]:
        """Run metric ``name`` and return its full record (see :func:`make_record`)."""
        if name not in self._metrics:
            raise KeyError(f"unknown metric {name!r}; known: {', '.join(self.names())}")
        start = time.monotonic()
        result = self._metrics[name](context)
        seconds = time.monotonic() - start
        record = make_record(name, result, context, seconds)
        logger.info("%s = %s (%.1f s)", name, json.dumps(record["values"]), seconds)
        return record


def library_versions() -> dict[str, str | None]:
    """Installed versions of the packages results depend on (None when absent)."""
    out: dict[str, str | None] = {}
    for package in VERSIONED_PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def make_record(name: str, result: Mapping[str, Any], context: MetricContext, seconds: float) -> dict[str, Any]:
    """One JSON-ready result: metric, values, label, feature extractor, model, data set, seed, counts, time, versions."""
    if "values" not in result or not isinstance(result["values"], Mapping):
        raise ValueError(f"metric {name!r} must return a dict with 'values'")
    return {
        "metric": name,
        "values": {k: _plain(v) for k, v in result["values"].items()},
        "label": result.get("label", name),
        "feature_extractor": result.get("feature_extractor"),
        "model": context.model_name,
        "model_hash": context.model_hash,
        "generation": _plain(context.generation),
        "dataset": context.dataset,
        "seed": context.seed,
        "num_samples": result.get("num_samples"),
        "extra": {k: _plain(v) for k, v in result.items()
                  if k not in ("values", "label", "feature_extractor", "num_samples")},
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "versions": library_versions(),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars
        return value.item()
    return value


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Append ``record`` as one JSON line to ``path`` (created with its folder if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, default=str)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return path


DEFAULT_REGISTRY = MetricRegistry()


def register_metric(name: str, registry: MetricRegistry | None = None) -> Callable[[MetricFn], MetricFn]:
    """Decorator registering a metric in ``registry`` (the default registry if None)."""
    return (registry or DEFAULT_REGISTRY).register_metric(name)


def compute(name: str, context: MetricContext, registry: MetricRegistry | None = None) -> dict[str, Any]:
    """Compute metric ``name`` with ``context``; returns its record (see :func:`make_record`)."""
    return (registry or DEFAULT_REGISTRY).compute(name, context)


def evaluate(names: Iterable[str], context: MetricContext, jsonl_path: str | os.PathLike[str] | None = None,
             registry: MetricRegistry | None = None) -> list[dict[str, Any]]:
    """Compute several metrics with one context (sharing networks and features) and log each to ``jsonl_path``."""
    records = []
    for name in names:
        record = compute(name, context, registry)
        if jsonl_path is not None:
            append_jsonl(jsonl_path, record)
        records.append(record)
    return records
