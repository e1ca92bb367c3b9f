"""The C allocator's settings for training.

glibc hands large freed blocks back to the operating system (blocks above the mmap threshold
are unmapped on free; the top of the heap is trimmed beyond the trim threshold). A training step
allocates and frees gigabytes of activations and gradients, so by default every step maps them
again and the kernel zero-fills every page anew: on a 2-core CPU a third of a bird-configuration
step was spent in the kernel. :func:`keep_freed_memory` tells the allocator to keep freed memory
for reuse instead (``SpeedOptions.keep_heap``). The process's peak memory grows a little (freed
blocks are reused, not returned); nothing computed changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks above it are still mapped (and unmapped) one by one
TRIM_THRESHOLD = 2**62  # never trim the heap's top on free
TOP_PAD = 2**30  # grow the heap a GiB at a time

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's allocator to keep freed memory in the process (once per process). Returns
    whether the settings are in force (False off glibc, e.g. macOS or musl)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, min(value, 2**31 - 1)) == 1 for param, value in
             ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    _applied = ok
    log.debug("allocator keeps freed memory: %s", ok)
    return ok
