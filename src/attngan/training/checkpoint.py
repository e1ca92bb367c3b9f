"""Resume checkpoints: one plain dict of tensors and numbers per file, written atomically.

Files are ``ckpt-<step>.pt`` in the run folder; the newest ``keep`` are kept. A new file
is complete before it gets its name and before any older one is deleted, so a run killed at
any moment leaves its previous checkpoints intact. Loading first checks the CRC-32 of every
record of the (zip) file, so a truncated or bit-flipped checkpoint is refused rather than
resumed from, then uses ``torch.load(weights_only=True)``: a checkpoint can never run code.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import torch

from ..files import atomic_file
from ..untrusted import refusal_reason

log = logging.getLogger(__name__)
_NAME = re.compile(r"ckpt-(\d+)\.pt$")
_TEMP = re.compile(r"\.ckpt-\d+\.pt\..*\.tmp$")  # left behind by a writer that was killed
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message names the file."""


class _Writer:
    """Passes writes to ``f`` and keeps the ``OSError`` one raised: ``torch.save`` swallows it
    and reports only a bare ``RuntimeError`` (for a full disk: "unexpected pos ...")."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` atomically and durably (:func:`attngan.files.atomic_file`)."""
    try:
        with atomic_file(path) as f:
            writer = _Writer(f)
            try:
                torch.save(obj, writer)  # type: ignore[arg-type]  # torch's stub wants IO[bytes]; write/flush suffice
            except RuntimeError:
                if writer.error is not None:
                    raise writer.error from None
                raise
    except OSError as exc:  # a read-only or vanished folder, a full disk
        raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None


def list_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(folder: str | os.PathLike[str], step: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write ``ckpt-<step>.pt`` atomically, then delete all but the newest ``keep``.

    Checkpoints of later steps than ``step`` are left from an abandoned run (the resume
    passed over them, for instance because they were corrupt): they are deleted rather than
    kept in place of this one. So are temporary files of writes that were killed.
    """
    folder = Path(folder)
    path = folder / f"ckpt-{step:08d}.pt"
    atomic_torch_save({"format_version": FORMAT_VERSION, **state}, path)
    found = list_checkpoints(folder)
    later = [p for p in found if checkpoint_step(p) > step]
    older = [p for p in found if checkpoint_step(p) <= step]
    for old in later + (older[:-keep] if keep > 0 else []):
        if old in later:
            log.warning("deleting %s: it is newer than the checkpoint just written (step %d)", old, step)
        old.unlink(missing_ok=True)
    _remove(p for p in folder.iterdir() if _TEMP.match(p.name))
    return path


def checkpoint_step(path: Path) -> int:
    """The step of a checkpoint file ``ckpt-<step>.pt``."""
    m = _NAME.match(path.name)
    assert m is not None
    return int(m.group(1))


def _remove(paths: Iterable[Path]) -> None:
    for p in paths:
        log.info("removing %s, left by an interrupted checkpoint write", p)
        p.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one checkpoint; a truncated, corrupt or unsafe file raises :class:`CheckpointError`
    naming it."""
    path = Path(path)
    _check_crc(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"refusing to load checkpoint {path}: it holds more than tensors and plain data "
                              f"({refusal_reason(exc)})") from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an attngan resume checkpoint")
    return state


def _check_crc(path: Path) -> None:
    """Check every record of a checkpoint against the CRC-32 its zip directory holds
    (``torch.load`` itself does not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({exc})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: record {bad} fails its CRC check")


def latest_checkpoint(folder: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; unreadable newer ones are reported and passed over."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            log.warning("%s; trying the previous checkpoint", exc)
    return None


def find_checkpoint(source: str | os.PathLike[str], subfolder: str, setting: str) -> tuple[Path, dict[str, Any]]:
    """A checkpoint file, or a run folder's newest checkpoint that loads (in its ``subfolder``, the
    trainer's checkpoint folder, or in itself); :class:`CheckpointError` names ``setting`` and the
    path when there is none."""
    path = Path(source)
    if path.is_file():
        return path, load_checkpoint(path)
    if not path.is_dir():
        raise CheckpointError(f"{setting}: {path} is neither a checkpoint file nor a run folder")
    found = latest_checkpoint(path / subfolder) or latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"{setting}: no checkpoint that loads in {path} or {path / subfolder}")
    return found


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
                f"output folder {folder} has {free / 2**20:.1f} MiB free; the run's checkpoints need about "
                f"{need_bytes / 2**20:.1f} MiB")


def state_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested dict/list/tuple: about what ``torch.save`` writes."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_bytes(v) for v in obj)
    return 0


def pending_optimizer_bytes(optimizers: Iterable[torch.optim.Optimizer]) -> int:
    """Bytes Adam's two moments will add to a checkpoint for parameters that have no state yet."""
    return sum(2 * p.nelement() * p.element_size()
               for opt in optimizers for group in opt.param_groups for p in group["params"] if p not in opt.state)


def check_space(folder: str | os.PathLike[str], checkpoint_bytes: int, keep: int) -> None:
    """Before training: fail unless ``folder`` is writable and has room for the checkpoints the
    run will hold at once (``keep`` of them plus the one being written), less those already there."""
    copies = max(1, keep + 1 - len(list_checkpoints(folder))) if keep > 0 else 1
    check_writable(folder, checkpoint_bytes * copies)


def check_fresh(folder: str | os.PathLike[str]) -> None:
    """A run that does not resume must not start over the checkpoints of an earlier one."""
    found = list_checkpoints(folder)
    if found:
        raise CheckpointError(f"{folder} already holds checkpoints of an earlier run (newest: {found[-1].name}); "
                              "pass --resume to continue it, or choose another run folder")
