"""Resume checkpoints: one plain dict of tensors and numbers per file, written atomically.

Files are ``ckpt-<step>.pt`` in the run folder; the newest ``keep`` are kept. Loading uses
``torch.load(weights_only=True)``: a checkpoint can never run code.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)
_NAME = re.compile(r"ckpt-(\d+)\.pt$")
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message names the file."""


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` via a temporary file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
        raise


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(folder: str | os.PathLike[str], step: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write ``ckpt-<step>.pt`` atomically, then delete all but the newest ``keep``."""
    folder = Path(folder)
    path = folder / f"ckpt-{step:08d}.pt"
    atomic_torch_save({"format_version": FORMAT_VERSION, **state}, path)
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one checkpoint; a truncated or corrupt file raises :class:`CheckpointError` naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an attngan resume checkpoint")
    return state


def latest_checkpoint(folder: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; unreadable newer ones are reported and passed over."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            log.warning("%s; trying the previous checkpoint", exc)
    return None


def rng_state() -> dict[str, Any]:
    """Global RNG states (torch CPU and CUDA, Python's ``random``)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def check_writable(folder: str | os.PathLike[str], need_bytes: int = 0) -> None:
    """Fail early (before training) if ``folder`` cannot take files of ``need_bytes``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-") as f:
            f.write(b"0")
            f.flush()
    except OSError as exc:
        raise CheckpointError(f"output folder {folder} is not writable: {exc.strerror or exc}") from None
    if need_bytes:
        free = shutil.disk_usage(folder).free
        if free < need_bytes:
            raise CheckpointError(
                f"output folder {folder} has {free / 2**20:.0f} MiB free; a checkpoint needs about "
                f"{need_bytes / 2**20:.0f} MiB")
