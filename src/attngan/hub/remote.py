"""Model folders on the Hugging Face Hub: ``org/name`` resolved to a local snapshot (downloaded
once, or read from the Hub's cache; ``HF_HUB_OFFLINE=1`` never touches the network)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
HUB_PATTERNS = ("*.json", "*.safetensors", "*.md")  # what is fetched of a Hub repo: a model folder and its card


def looks_like_repo_id(name: str) -> bool:
    """Whether ``name`` is spelled as a Hugging Face Hub model id, ``org/name`` (letters, digits,
    ``-``, ``_``, ``.``; no ``..`` or ``--``; not ending in ``.``)."""
    return bool(_REPO_ID.fullmatch(name)) and ".." not in name and "--" not in name and not name.endswith(".")


def resolve_model_folder(name_or_path: str | os.PathLike[str], *, revision: str | None = None,
                         cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False) -> Path:
    """The local folder of a model: a ``Path``, an existing path or a string not spelled as a
    repo id as it is; otherwise the snapshot of the Hugging Face Hub repo ``org/name`` at
    ``revision`` (branch, tag or commit; default ``main``), from ``cache_dir`` (default: the
    Hub's cache) or downloaded. With ``local_files_only`` (or ``HF_HUB_OFFLINE=1``) only the
    cache is used.

    Raises ``FileNotFoundError`` naming the repo id (and revision) when it cannot be had, and
    ``ValueError`` when ``revision`` is given for a local folder.
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    if not isinstance(name_or_path, str) or path.exists() or not looks_like_repo_id(text):
        if revision is not None:
            raise ValueError(f"revision={revision!r} selects a version of a Hugging Face Hub repo; "
                             f"{path} is a local path")
        return path
    where = text if revision is None else f"{text} (revision {revision})"
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"model folder not found: {text}; to load {where} from the Hugging Face Hub, "
                                "install huggingface_hub (pip install 'attngan[hub]')") from None
    try:
        folder = snapshot_download(text, revision=revision, cache_dir=None if cache_dir is None else os.fspath(cache_dir), local_files_only=local_files_only,
                                   allow_patterns=list(HUB_PATTERNS))
    except (OSError, ValueError) as exc:  # not found, offline and not cached, no access, bad id
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FileNotFoundError(f"model folder not found: {text} is not a local folder, and {where} cannot be "
                                f"loaded from the Hugging Face Hub: {reason}") from None
    log.info("%s: using the snapshot in %s", where, folder)
    return Path(folder)
