"""Shared test helpers: where the shared golden files and real data live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATTNGAN_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden"
DATA = SHARED / "data"
CUB = DATA / "cub_birds_001-005"
ANIME = DATA / "anime_faces"


def require(path: Path) -> Path:
    """Skip the calling test, saying why, when a shared file is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared golden files and data live beside the project)")
    return path
