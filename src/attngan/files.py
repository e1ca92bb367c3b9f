"""What every writer and reader of artefacts shares: atomic file and folder replacement,
write errors that name the file (:func:`writing`), and ``config.json``-style reads whose
errors name the file.

A reader never sees a half-written file or folder: files are written to a temporary sibling,
fsynced and moved into place with ``os.replace``; folders are built beside the target and
swapped in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import safetensors.torch
import torch


class OutputError(RuntimeError):
    """An output file or folder cannot be written (disk full, read-only, I/O error); the message
    names it and says what became of the run."""


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], then: str = "") -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into an :class:`OutputError` naming ``path``
    (``then``, if given, is appended: what the failure means for the caller)."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise OutputError(f"cannot write {path}: {reason}" + (f"; {then}" if then else "")) from None


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], durable: bool = True) -> Iterator[IO[bytes]]:
    """A binary file that replaces ``path`` only when the block finishes without error.

    The data go to a hidden temporary sibling (``.<name>.<random>.tmp``), removed on any error.
    ``durable``: fsync the file before the rename and the folder after it, so the new file
    survives a power cut; caches that can be rebuilt pass False and skip both.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort (some file systems refuse)."""
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


def write_atomic(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, durable) as f:
        f.write(data)
    return Path(path)


def write_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike[str],
                      metadata: dict[str, str] | None = None) -> str:
    """Write ``state`` as safetensors to ``path`` atomically, with the permissions of a plain
    ``open`` (``safetensors.torch.save_file`` makes the file private to its owner); returns the
    SHA-256 (hex) of the bytes written."""
    data = safetensors.torch.save(state, metadata=metadata)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def replace_dir(tmp: Path, folder: Path, keep_others: bool = False) -> None:
    """Move the finished folder ``tmp`` to ``folder``, replacing any folder there.

    ``keep_others``: entries of the old folder that ``tmp`` lacks (a model card, say) are
    copied into ``tmp`` first, so only what was rewritten is replaced.
    """
    if folder.exists():
        if keep_others:
            for entry in folder.iterdir():
                target = tmp / entry.name
                if target.exists() or entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    shutil.copytree(entry, target, symlinks=True)
                else:
                    shutil.copy2(entry, target, follow_symlinks=False)
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)


@contextlib.contextmanager
def staged_dir(folder: str | os.PathLike[str], keep_others: bool = False) -> Iterator[Path]:
    """A fresh temporary folder beside ``folder`` to fill; it replaces ``folder`` when the block
    finishes without error and is removed otherwise (``folder`` is then left as it was).
    ``keep_others``: see :func:`replace_dir`."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{secrets.token_hex(6)}.tmp")
    tmp.mkdir(0o777)  # the umask applies (mkdtemp would make it private)
    try:
        yield tmp
        replace_dir(tmp, folder, keep_others)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_format_json(file: Path, kind: str, hint: str) -> dict[str, Any]:
    """The JSON object in ``file`` whose ``format`` field is ``kind``.

    ``hint`` says what the file's folder should be ("an attngan model folder"); every error
    names ``file``: missing, unreadable, not JSON, or not of format ``kind``.
    """
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{file} not found: is {file.parent} {hint}?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != kind:
        raise ValueError(f"{file} is not {hint} ('format' must be {kind!r})")
    return data
