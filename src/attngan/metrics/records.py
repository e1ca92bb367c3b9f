"""Evaluation records: one JSON object per metric, with everything needed to trust and repeat it
(values, what the number is, the feature extractor and its weights hash, model, generation
settings, data, seeds, counts, protocol, time, library versions), appended to JSONL files."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, TypedDict

import torch

VERSIONED_PACKAGES = ("attngan", "torch", "torchvision", "numpy", "scipy", "pillow", "safetensors", "torch-fidelity")
RECORD_FIELDS = ("metric", "values", "label", "feature_extractor", "model", "model_hash", "generation", "dataset",
                 "seed", "num_samples", "protocol", "extra", "time", "seconds", "versions")
_RESULT_KEYS = ("values", "label", "feature_extractor", "num_samples", "details")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the packages results depend on (None when absent)."""
    out: dict[str, str | None] = {}
    for package in VERSIONED_PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def plain(value: Any) -> Any:
    """``value`` with tensors, numpy scalars and arrays, tuples and nested mappings made JSON-ready."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy scalars and arrays
        return value.tolist()
    return value


class MetricRecord(TypedDict):
    """One metric's result as written to JSONL (:func:`make_record`): what crosses from the
    evaluation engine to reports, tables, the CLI and a run's ``evaluations.jsonl``."""

    metric: str
    values: dict[str, Any]  # name -> number (or list of numbers)
    label: str
    feature_extractor: Any  # the network and its weights hash, or None
    model: str
    model_hash: str
    generation: dict[str, Any]  # the pipeline's settings: backend, precision, device...
    dataset: Any  # DataSpec.describe(), or a name
    seed: int
    num_samples: int | None
    protocol: dict[str, Any]
    extra: dict[str, Any]  # the metric's own entries
    time: str
    seconds: float
    versions: dict[str, str | None]


def make_record(name: str, result: Mapping[str, Any], *, model: str, model_hash: str, generation: Mapping[str, Any],
                dataset: Mapping[str, Any] | str, seed: int, protocol: Mapping[str, Any], seconds: float
                ) -> MetricRecord:
    """One JSON-ready result of metric ``name``.

    ``result`` holds ``values`` (a mapping of numbers), ``label`` (what the number is),
    ``feature_extractor`` (network and weights hash, or None), ``num_samples`` and any further
    metric-specific entries, which go to ``extra`` (``details``, for reports, is left out).
    """
    if "values" not in result or not isinstance(result["values"], Mapping):
        raise ValueError(f"metric {name!r} must return a dict with 'values'")
    return {
        "metric": name,
        "values": plain(dict(result["values"])),
        "label": result.get("label", name),
        "feature_extractor": result.get("feature_extractor"),
        "model": model,
        "model_hash": model_hash,
        "generation": plain(dict(generation)),
        "dataset": plain(dataset),
        "seed": seed,
        "num_samples": result.get("num_samples"),
        "protocol": plain(dict(protocol)),
        "extra": {k: plain(v) for k, v in result.items() if k not in _RESULT_KEYS},
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "versions": library_versions(),
    }


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> Path:
    """Append ``record`` as one JSON line to ``path`` (created with its folder if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, default=str)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return path
