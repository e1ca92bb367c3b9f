"""Exponential moving average of generator weights (kept as a separate module)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """Holds ``shadow``, an EMA copy of a model (matched by parameter name, so the model may use
    other but equivalent layers); buffers (BatchNorm statistics) are copied.

    The effective decay warms up as ``min(decay, (1 + step) / (warmup + step))`` so early,
    poor weights are forgotten quickly.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: int = 100) -> None:
        super().__init__()
        self.decay = decay
        self.warmup = warmup
        self.shadow = copy.deepcopy(model).eval()
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
