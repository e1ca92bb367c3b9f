"""One home for hashing tensors: the fingerprint of a set of named tensors (a state dict)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch


def state_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (64 hex digits) of named tensors, in name order: each name, shape, dtype and value."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
