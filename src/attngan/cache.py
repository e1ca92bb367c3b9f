"""Where attngan keeps what it can rebuild: the one home of every cache folder.

``$ATTNGAN_CACHE`` when set, else ``$XDG_CACHE_HOME/attngan`` (``~/.cache/attngan`` by
default). Each kind of artefact has its own sub-folder (:data:`KINDS`): real-image feature
statistics, attribute / scene classifiers, ONNX exports and compiled training kernels
(``run.speed.compile``). Deleting any of them only costs the time to rebuild it.
"""

from __future__ import annotations

import os
from pathlib import Path

KINDS = ("fid_stats", "classifiers", "onnx", "inductor")


def cache_root() -> Path:
    """``$ATTNGAN_CACHE``, or ``$XDG_CACHE_HOME/attngan``, or ``~/.cache/attngan``."""
    root = os.environ.get("ATTNGAN_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "attngan"


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cached artefact (one of :data:`KINDS`), not created."""
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; expected one of {', '.join(KINDS)}")
    return cache_root() / kind
