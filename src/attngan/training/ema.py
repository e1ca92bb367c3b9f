"""Exponential moving average of generator weights (kept as a separate module), and the
BatchNorm statistics that belong to averaged weights."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)
B = TypeVar("B")


class EMA(nn.Module, Generic[M]):
    """Holds ``shadow``, an EMA copy of a model (matched by parameter name, so the model may use
    other but equivalent layers); buffers (BatchNorm statistics) are copied.

    The effective decay warms up as ``min(decay, (1 + step) / (warmup + step))`` so early,
    poor weights are forgotten quickly.
    """

    num_updates: torch.Tensor

    def __init__(self, model: M, decay: float = 0.999, warmup: int = 100) -> None:
        super().__init__()
        self.decay = decay
        self.warmup = warmup
        self.shadow: M = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))

    def current_decay(self) -> float:
        step = int(self.num_updates)
        if self.warmup <= 0:
            return self.decay
        return min(self.decay, (1 + step) / (self.warmup + step))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards ``model``'s."""
        decay = self.current_decay()
        model_params = dict(model.named_parameters())
        names = [name for name, _ in self.shadow.named_parameters()]
        torch._foreach_lerp_([p for _, p in self.shadow.named_parameters()],
                             [model_params[name].detach() for name in names], 1.0 - decay)
        model_buffers = dict(model.named_buffers())
        for name, b in self.shadow.named_buffers():
            b.copy_(model_buffers[name])
        self.num_updates += 1


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, forward: Callable[[B], object], batches: Iterable[B]) -> int:
    """Re-estimate ``model``'s BatchNorm running statistics for its own weights: reset them, run
    ``forward(batch)`` for every batch in training mode with a cumulative average (every batch
    counts equally), and leave the model in eval mode. Returns the number of batches.

    The EMA copy of a generator holds averaged weights but the live model's statistics, which
    belong to other weights (the original does the same); its images in eval mode are then
    off in brightness and contrast, most of all early in a run.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    count = 0
    try:
        for batch in batches:
            forward(batch)
            count += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return count
