"""The modules and loss functions one GAN training step calls (:class:`~.gan.GANTrainer`): each a
unit that ``DistributedDataParallel`` wraps or ``run.speed.compile`` compiles."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from ..losses.damsm import damsm_losses
from ..losses.gan import DiscriminatorLogits, discriminators_loss, generator_loss
from ..models.discriminator import Discriminator


class DiscriminatorStep(nn.Module):
    """One forward for a discriminator update: logits for real, fake and mismatched pairs."""

    def __init__(self, discriminator: Discriminator) -> None:
        super().__init__()
        self.d = discriminator

    def forward(self, real: torch.Tensor, fake: torch.Tensor, sentence: torch.Tensor,
                wrong_sentence: torch.Tensor, wrong_rows: torch.Tensor, hard_sentence: torch.Tensor | None = None,
                hard_rows: torch.Tensor | None = None, rounded: torch.Tensor | None = None,
                rounded_rows: torch.Tensor | None = None) -> DiscriminatorLogits:
        """``[B, 3, S, S]`` real and fake images, ``[B, D]`` sentences, ``[M, D]`` mismatched
        sentences of real rows ``wrong_rows [M]`` (and ``[H, D]`` counterfactual sentences of real
        rows ``hard_rows [H]``; ``[R, 3, S, S]`` rounded images of the scenes of rows ``rounded_rows
        [R]``, with those rows' sentences) -> ``[B]`` (``[M]``, ``[H]``, ``[R]``) logits."""
        real_f, fake_f = self.d(real), self.d(fake)
        cond_real, uncond_real = self.d.logits(real_f, sentence)
        cond_fake, uncond_fake = self.d.logits(fake_f, sentence)
        cond_wrong = self.d.conditional_head(real_f[wrong_rows], wrong_sentence)
        cond_hard = cond_rounded = None
        if hard_sentence is not None and hard_rows is not None:
            cond_hard = self.d.conditional_head(real_f[hard_rows], hard_sentence)
        if rounded is not None and rounded_rows is not None:
            cond_rounded = self.d.conditional_head(self.d(rounded), sentence[rounded_rows])
        return DiscriminatorLogits(cond_real, cond_fake, cond_wrong, uncond_real, uncond_fake, cond_hard, cond_rounded)


class Mismatched(NamedTuple):
    """The discriminators' mismatched pairs of a step: real rows ``rows [M]`` with another sample's
    sentence ``sentence [M, D]`` (their term's mean times ``scale``), real rows ``hard_rows [H]``
    with counterfactual sentences ``hard_sentence [H, D]`` (or None), and the rounded renderings
    ``rounded [R, 3, S, S]`` of rows ``rounded_rows [R]``' scenes at the last stage's size, with
    those rows' own sentences (or None)."""

    sentence: torch.Tensor
    rows: torch.Tensor
    scale: float
    hard_sentence: torch.Tensor | None = None
    hard_rows: torch.Tensor | None = None
    rounded: torch.Tensor | None = None
    rounded_rows: torch.Tensor | None = None


class GeneratedLogits(NamedTuple):
    """One discriminator's logits for generated images: conditional ``[B]``, unconditional ``[B]``
    (None without that head) and, when asked, conditional ``[H]`` with counterfactual captions."""

    cond: torch.Tensor
    uncond: torch.Tensor | None
    cond_hard: torch.Tensor | None = None


class FakeLogits(nn.Module):
    """The generator's adversarial pass through one discriminator: ``[B, 3, S, S]`` images and
    ``[B, D]`` sentences (and ``[H, D]`` counterfactual sentences of rows ``hard_rows [H]``) ->
    :class:`GeneratedLogits`."""

    def __init__(self, discriminator: Discriminator) -> None:
        super().__init__()
        self.d = discriminator

    def forward(self, fake: torch.Tensor, sentence: torch.Tensor, hard_sentence: torch.Tensor | None = None,
                hard_rows: torch.Tensor | None = None) -> GeneratedLogits:
        features = self.d(fake)
        cond, uncond = self.d.logits(features, sentence)
        cond_hard = None
        if hard_sentence is not None and hard_rows is not None:
            cond_hard = self.d.conditional_head(features[hard_rows], hard_sentence)
        return GeneratedLogits(cond, uncond, cond_hard)


class LossTerms(NamedTuple):
    """The loss functions a step calls (:mod:`attngan.losses`, or their compiled forms)."""

    damsm: Callable[..., dict[str, torch.Tensor]] = damsm_losses
    generator: Callable[..., dict[str, torch.Tensor]] = generator_loss
    discriminators: Callable[..., tuple[torch.Tensor, list[torch.Tensor]]] = discriminators_loss


MODE_SEEKING_STRIDE = 4  # a quarter of the captions are drawn twice for the mode-seeking term


class TwinRows(NamedTuple):
    """Which captions of a process's batch the mode-seeking term draws a second time."""

    rows: torch.Tensor  # [K] local rows (K may be 0)
    first: int  # the global index of this process's first twin (its row in the global twin noise)
    pairs: int  # twins in the global batch
    scale: float  # K * world_size / pairs: the processes' mean of per-pair means is the global mean


def mode_seeking_rows(batch: int, rank: int = 0, world_size: int = 1) -> TwinRows:
    """Every fourth row of the global batch (``world_size * batch`` rows, this process's from
    ``rank * batch``), so that the pairs do not depend on how the batch is split over processes."""
    start, stride = rank * batch, MODE_SEEKING_STRIDE
    first = (start + stride - 1) // stride
    rows = torch.tensor(range(first * stride - start, batch, stride), dtype=torch.long)
    pairs = (batch * world_size + stride - 1) // stride
    return TwinRows(rows, first, pairs, len(rows) * world_size / pairs)
