"""Reading files that may come from anyone, without ever running code from them.

- :func:`safe_unpickle`: the original AttnGAN's Python 2 pickles (``captions.pickle``,
  ``filenames.pickle``, ``class_info.pickle``) through an unpickler that builds plain data only.
- :func:`load_state_dict_file`: ``.pth`` checkpoints with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

# --------------------------------------------------------------------------- pickles


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for a Python object that plain data never needs."""


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    dtype = np.dtype(dtype)
    if dtype.hasobject or not isinstance(data, (bytes, str)):
        raise UnsafePickleError("numpy scalar with object dtype or unexpected payload")
    raw = data.encode("latin1") if isinstance(data, str) else data
    return np.frombuffer(raw, dtype=dtype)[0]


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, (str, bytes)):
        raise UnsafePickleError("numpy dtype given by a non-string")
    dtype = np.dtype(spec.decode("latin1") if isinstance(spec, bytes) else spec)
    if dtype.hasobject:
        raise UnsafePickleError("numpy object dtype is not allowed")
    return dtype


def _numpy_reconstruct(cls: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise UnsafePickleError("array reconstruction of a class other than numpy.ndarray")
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode``, as Python 3 pickles bytes (numpy buffers) in protocols 0-2; latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode is only allowed for latin-1 text")
    return text.encode("latin1")


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("collections", "OrderedDict"): dict,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load {module}.{name}: only plain data may be unpickled") from None


def safe_unpickle(path: str | os.PathLike[str]) -> Any:
    """Load a (Python 2 or 3) pickle of plain data: lists, dicts, strings, numbers, numpy
    numbers and arrays. Anything that could run code raises :class:`UnsafePickleError`,
    naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read {path}: {exc.strerror}") from None
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except Exception as exc:  # truncated or corrupt
        raise ValueError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc})") from None
    return obj


def load_captions_pickle(path: str | os.PathLike[str]) -> tuple[list, list, dict[int, str], dict[str, int]]:
    """The original's ``captions.pickle``: ``(train_captions, test_captions, ixtoword, wordtoix)``."""
    obj = safe_unpickle(path)
    if not isinstance(obj, (list, tuple)) or len(obj) != 4 or not isinstance(obj[2], dict):
        raise ValueError(f"{path}: expected [train_captions, test_captions, ixtoword, wordtoix]")
    ixtoword = {int(k): str(v) for k, v in obj[2].items()}
    wordtoix = {str(k): int(v) for k, v in obj[3].items()}
    return list(obj[0]), list(obj[1]), ixtoword, wordtoix


# --------------------------------------------------------------------------- checkpoints


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read an original ``.pth`` state_dict safely (``weights_only=True``) onto the CPU.

    Accepts a bare state_dict, one nested under ``state_dict``/``model``, and strips the
    ``module.`` prefix DataParallel adds.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except pickle.UnpicklingError as exc:
        raise UnsafePickleError(f"{path}: refusing to load objects other than tensors and plain data "
                                f"({refusal_reason(exc)})") from None
    except Exception as exc:
        raise ValueError(f"{path} is not a loadable weights file ({type(exc).__name__}: {str(exc)[:200]})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def refusal_reason(exc: BaseException) -> str:
    """The line of a ``torch.load(weights_only=True)`` refusal that names what was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "global" in line.lower()]
    return (named or lines or [type(exc).__name__])[0][:200]
