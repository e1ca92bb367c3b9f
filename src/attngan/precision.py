"""The precision policy: which arithmetic each part of attngan runs in, decided in one place.

``precision`` is one of ``"auto"``, ``"fp32"`` or ``"bf16"`` wherever it is accepted (the
pipeline, ``attngan generate`` / ``serve`` / ``evaluate``, ``run.precision`` of training).

* ``auto`` is ``bf16`` where the device computes bf16 natively (a CPU with AVX-512 BF16 or
  AMX, a CUDA GPU with bf16 support) and ``fp32`` elsewhere (AVX2-only CPUs and AVX-512 CPUs
  without its BF16 extension emulate bf16, slower than fp32).
* Inference: the fused fast path runs every generator stage (self-attention, spectral-norm
  layers, word attention, image heads) in the precision chosen; the conditioning
  augmentation and the text encoder (LSTM/GRU) stay in fp32 (tiny, and oneDNN has no bf16 RNN
  without native bf16). The exact path (the reference modules) is fp32 always, and so is the
  ONNX Runtime backend; ONNX export writes an fp32 graph whatever the host.
* Training: ``bf16`` runs each step under bf16 autocast with fp32 master weights, losses in
  fp32 and the text encoder in fp32.

Every output and export row records the precision that was used (never ``auto``).

The hardware probe can be forced with the environment variable ``ATTNGAN_NATIVE_BF16``
(``1`` or ``0``), so that the bf16 paths can be exercised (slowly, emulated) on machines
without native bf16, and the fp32 paths on machines with it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16")
FORCE_ENV = "ATTNGAN_NATIVE_BF16"


def check_precision(precision: str, what: str = "precision") -> str:
    """``precision`` itself if it is one of :data:`PRECISIONS`, else a ``ValueError`` naming ``what``."""
    if precision not in PRECISIONS:
        raise ValueError(f"{what} must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    return precision


@functools.cache
def hardware_bf16(device_type: str) -> bool:
    """Whether this machine's ``device_type`` (``cpu``, ``cuda``) computes bf16 natively (asked once).

    On a CPU that means bf16 instructions (AVX-512 BF16 or AMX) and oneDNN to use them. oneDNN alone
    is not enough: it reports bf16 support on every AVX-512 CPU, and without those instructions it
    converts each operand to fp32 and back (a 16-channel convolution block about 2x slower than in
    fp32 on such a machine)."""
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type == "cpu":
        return cpu_bf16_instructions() and _onednn_bf16()
    return False


def cpu_bf16_instructions() -> bool:
    """Whether the CPU has bf16 arithmetic instructions: AVX-512 BF16 or AMX tiles (as torch reads them)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(bool(probe()) for probe in probes if probe is not None)
    except RuntimeError:
        return False


def _onednn_bf16() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """What ``auto`` believes about ``device``: :func:`hardware_bf16`, unless ``ATTNGAN_NATIVE_BF16`` says otherwise."""
    forced = os.environ.get(FORCE_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return hardware_bf16(torch.device(device).type)


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``"auto"`` -> ``"bf16"`` where ``device`` has native bf16, else ``"fp32"``; other values checked and returned."""
    if check_precision(precision) != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def dtype_of(precision: str) -> torch.dtype:
    """``torch.bfloat16`` for ``"bf16"``, ``torch.float32`` for ``"fp32"`` (resolve ``auto`` first)."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"dtype_of needs a resolved precision ('fp32' or 'bf16'), got {precision!r}")
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` when ``precision`` resolves to ``bf16`` there, else a no-op context."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full_precision(device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
    """A region that runs in fp32 even inside bf16 autocast (the text encoder's RNN)."""
    return torch.autocast(torch.device(device).type, enabled=False)
