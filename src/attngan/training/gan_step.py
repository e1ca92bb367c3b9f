"""The modules and loss functions one GAN training step calls (:class:`~.gan.GANTrainer`): each a
unit that ``DistributedDataParallel`` wraps or ``run.speed.compile`` compiles."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from ..losses.damsm import damsm_losses
from ..losses.gan import DiscriminatorLogits, discriminators_loss, generator_loss
from ..models.discriminator import Discriminator
from .compiled import compile_function, compile_module

log = logging.getLogger(__name__)


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


def next_sample_pairs(all_sentences: torch.Tensor, rank: int, batch: int, world_size: int = 1) -> Mismatched:
    """The mismatched pairs of this process's ``batch`` real rows: each with the sentence of the next
    sample of the global batch (``all_sentences [world_size * batch, D]``; the global batch's last
    sample has none), their term's mean scaled so that the processes' mean is the global batch's."""
    total = all_sentences.shape[0]
    global_rows = torch.arange(rank * batch, (rank + 1) * batch, device=all_sentences.device)
    rows = (global_rows + 1 < total).nonzero().flatten()
    return Mismatched(all_sentences[global_rows[rows] + 1], rows, len(rows) * world_size / (total - 1))


def with_rounded(pairs: Mismatched, rounded: torch.Tensor, valid: torch.Tensor,
                 layout: torch.memory_format = torch.contiguous_format) -> Mismatched:
    """``pairs`` with the rounded renderings ``rounded [B, 3, S, S]`` of the rows whose ``valid [B]``
    is set (a scene of circles only has none), on the device of ``pairs``' sentences."""
    device = pairs.sentence.device
    rows = valid.to(device).nonzero().flatten()
    images = rounded.to(device, non_blocking=True)[rows]
    return pairs._replace(rounded=images.contiguous(memory_format=layout), rounded_rows=rows)


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


def compile_step(generator: nn.Module, image_encoder: nn.Module, fake_logits: Sequence[FakeLogits],
                 steps: Sequence[DiscriminatorStep], eager_fake: str | None = None,
                 eager_update: str | None = None) -> LossTerms:
    """``run.speed.compile``: the generator, the frozen image encoder, the generator's discriminator
    passes (unless ``eager_fake`` says why not) and the discriminators' update passes (unless
    ``eager_update`` says why not) compiled in place, built on their first call; returns the loss
    terms, compiled likewise (the discriminators' with their update)."""
    compile_module(generator)
    if eager_fake:
        log.info("run.speed.compile: the generator's discriminator passes run eagerly (%s)", eager_fake)
    else:
        for fake in fake_logits:
            compile_module(fake)
    compile_module(image_encoder)
    if eager_update:
        log.info("run.speed.compile: the discriminators' update runs eagerly (%s)", eager_update)
    else:
        for step in steps:
            compile_module(step)
    damsm, generator_terms, discriminators = LossTerms()
    return LossTerms(compile_function(damsm), compile_function(generator_terms),
                     discriminators if eager_update else compile_function(discriminators))


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


def with_twins(inputs: tuple[torch.Tensor, ...], twins_of: TwinRows | None, noise: torch.Generator
               ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
    """The generator's inputs (noise ``[B, Z]`` first, then the caption's tensors, each ``[B, ...]``)
    with the twin rows appended (``[B + K, ...]``): the same captions, new noise drawn from ``noise``
    for the global batch's twins (this process's slice of it). Returns them and the twin rows
    ``[K]`` on the inputs' device (None and the inputs as given without a mode-seeking term)."""
    if twins_of is None:
        return inputs, None
    z = inputs[0]
    k = len(twins_of.rows)
    picked = twins_of.rows.to(z.device)  # one copy to the device a step
    twin_z = torch.randn(twins_of.pairs, z.shape[1], generator=noise)[twins_of.first:twins_of.first + k]
    rest = tuple(torch.cat((x, x[picked])) for x in inputs[1:])
    return (torch.cat((z, twin_z.to(z.device))), *rest), picked
