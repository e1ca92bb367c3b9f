"""The generator a GAN run exports: its EMA weights with BatchNorm statistics of their own."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from ..config import GeneratorConfig
from ..data import TextImageData, collate
from ..hub import ModelBundle, save_pretrained
from ..models.generator import Generator
from ..precision import autocast
from .ema import recalibrate_batchnorm
from .loop import pad_to
from .negatives import TextEncoderFn, encode_captions
from .warm_start import save_judges

M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class RecalibrationPlan:
    """How the statistics are re-estimated: ``batches`` training batches of ``batch_size`` items
    (the first items of the data set, in order), noise from a generator seeded ``seed``, forward
    passes at ``precision`` on ``device``."""

    batches: int
    batch_size: int
    seed: int
    precision: str
    device: torch.device


def recalibrated_copy(shadow: Generator, config: GeneratorConfig, data: TextImageData, text_encoder: TextEncoderFn,
                      max_words: int, plan: RecalibrationPlan) -> Generator:
    """A copy of the EMA generator ``shadow`` (plain BatchNorm and reference layers, built from
    ``config``) whose BatchNorm statistics are re-estimated for its averaged weights on ``plan``'s
    batches of ``data`` (captions encoded by the frozen ``text_encoder``, padded to ``max_words``).
    Fixed items (those of epoch 0; the data set's epoch is restored) and noise; the global random state
    is untouched."""
    dev, b = plan.device, plan.batch_size
    with torch.random.fork_rng(devices=[]):
        generator = Generator(config)
    generator.load_state_dict(shadow.state_dict())
    generator.to(dev)
    noise = torch.Generator().manual_seed(plan.seed)
    count = min(plan.batches, len(data) // b)

    def forward(items: Sequence[int]) -> None:
        batch = collate([data[i] for i in items])
        words, sentence, _ = encode_captions(text_encoder, batch, max_words, dev, False)
        n = len(items)
        z = torch.randn(n, config.noise_dim, generator=noise)
        eps = torch.randn(n, config.condition_dim, generator=noise)
        with autocast(plan.precision, dev):
            generator(z.to(dev), sentence, words, pad_to(batch["tokens"], max_words, 1).to(dev) == 0, eps=eps.to(dev))

    # the items as at epoch 0 (a training set draws each item's caption per epoch): the statistics then
    # depend on the weights alone, not on the step the run is exported at
    epoch = getattr(data, "epoch", None)
    set_epoch = getattr(data, "set_epoch", None)
    if set_epoch is not None:
        set_epoch(0)
    try:
        recalibrate_batchnorm(generator, forward, [range(k * b, (k + 1) * b) for k in range(count)])
    finally:
        if set_epoch is not None and epoch is not None:
            set_epoch(epoch)
    return generator


def save_model_folder(bundle: ModelBundle, path: Path, discriminators: Sequence[nn.Module],
                      encoder_discriminator: dict[str, nn.Module]) -> Path:
    """``bundle`` saved as an inference folder at ``path`` (CPU copies of its modules, in eval mode),
    with the run's judges beside it (:func:`.warm_start.save_judges`, tagged with the saved
    generator); returns the folder."""
    image_encoder = None if bundle.image_encoder is None else _cpu_copy(bundle.image_encoder)
    plain = ModelBundle(bundle.config, bundle.vocab, _cpu_copy(bundle.text_encoder), _cpu_copy(bundle.generator),
                        image_encoder, bundle.metadata)
    saved = save_pretrained(plain, path)
    save_judges(saved, plain.generator.state_dict(), discriminators, encoder_discriminator)
    return saved


def _cpu_copy(module: M) -> M:
    return copy.deepcopy(module).cpu().eval()
