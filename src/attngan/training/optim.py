"""Optimisers of the trainers."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .options import OptimOptions


def adam(params: Iterable[torch.nn.Parameter], options: OptimOptions, device: torch.device,
         fused: bool) -> torch.optim.Adam:
    """Adam with ``options``' learning rate and betas; ``fused``: one fused kernel over every parameter
    (the same update to float rounding), else the per-parameter loop of the original."""
    kwargs: dict[str, bool] = {"fused": True} if fused and device.type in ("cpu", "cuda") else {"foreach": False}
    return torch.optim.Adam(list(params), lr=options.lr, betas=(options.beta1, options.beta2), **kwargs)
