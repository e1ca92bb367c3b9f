"""The encoder discriminator of a GAN run (``encoder_discriminator`` > 0): a trainable conditional
head (:class:`~attngan.models.discriminator.FeatureDiscriminator`) over the frozen DAMSM image
encoder's region features of the last stage's images, trained beside the per-stage
discriminators with the same adversarial loss; the generator's term through it is weighted by
``encoder_discriminator``.

The encoder knows each word on real images (it was trained for it), but the generator learns to
please its fixed word scores with a texture; a head that keeps learning from the generated images
takes that texture apart again, and it starts from features that tell the words apart, where the
per-stage discriminators learn shape from pixels late or never (``benchmarks/discriminator_probe.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..losses.gan import counterfactual_ranking_loss, discriminator_loss, generator_adversarial_loss
from ..models.discriminator import FeatureDiscriminator
from ..models.layers import init_weights_original
from ..precision import autocast
from .augment import shift_images
from .distributed import DistInfo
from .gan_step import Mismatched
from .optim import adam
from .options import GANTrainConfig


class EncoderDiscriminator:
    """Holds the head and its optimiser; :meth:`update` trains it on one batch, :meth:`generator_loss`
    gives the generator's weighted term."""

    def __init__(self, cfg: GANTrainConfig, feature_dim: int, text_dim: int, dist: DistInfo) -> None:
        self.cfg = cfg
        d = cfg.discriminator
        self.head = FeatureDiscriminator(feature_dim, text_dim, d.channels, d.spectral_norm)
        self.head.apply(init_weights_original)
        self.head.to(dist.device).train()
        self.opt = adam(self.head.parameters(), cfg.optim_d, dist.device, cfg.run.speed.fused_adam)
        self.forward: nn.Module = DistributedDataParallel(self.head) if dist.enabled else self.head

    def update(self, real_regions: torch.Tensor, fake_regions: torch.Tensor, sentence: torch.Tensor,
               pairs: Mismatched) -> float:
        """One Adam update on real and generated region features ``[B, C, h, w]`` (no gradient to the
        images) with their sentences ``[B, D]``, the mismatched pairs and the counterfactual pairs of
        ``pairs``; returns the loss."""
        cfg = self.cfg
        # one forward over both (a DistributedDataParallel module runs once per backward)
        real_f, fake_f = self.forward(torch.cat((real_regions, fake_regions)).detach()).chunk(2)
        head = self.head.conditional_head
        cond_real, cond_fake = head(real_f, sentence), head(fake_f, sentence)
        cond_wrong = head(real_f[pairs.rows], pairs.sentence)
        cond_hard = None
        if pairs.hard_sentence is not None and pairs.hard_rows is not None:
            cond_hard = head(real_f[pairs.hard_rows], pairs.hard_sentence)
        loss = discriminator_loss(cond_real.float(), cond_fake.float(), cond_wrong.float(), wrong_scale=pairs.scale,
                                  kind=cfg.adversarial_loss, cond_hard=None if cond_hard is None else cond_hard.float())
        ranking = cfg.hard_negatives.discriminator_ranking
        if ranking > 0 and cond_hard is not None and pairs.hard_rows is not None:
            loss = loss + ranking * counterfactual_ranking_loss(cond_real[pairs.hard_rows], cond_hard)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def update_on_images(self, encoder: nn.Module, real: torch.Tensor, fake: torch.Tensor, sentence: torch.Tensor,
                         pairs: Mismatched, shifts: Sequence[torch.Tensor] | None = None) -> float:
        """:meth:`update` on the region features ``encoder`` (the frozen image encoder) gives for real and
        generated images ``[B, 3, S, S]``, each first moved by its ``(dy, dx)`` of ``shifts`` (``[B, 2]``
        for the real, then for the generated images; None: unmoved)."""
        if shifts is not None:
            real, fake = shift_images(real, shifts[0]), shift_images(fake, shifts[1])
        with torch.no_grad(), autocast(self.cfg.run.precision, real.device):
            regions, _ = encoder(torch.cat((real, fake)))
        real_regions, fake_regions = regions.float().chunk(2)
        return self.update(real_regions, fake_regions, sentence, pairs)

    def generator_loss(self, fake_regions: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        """The generator's adversarial term through the head for region features ``[B, C, h, w]`` of
        its images (differentiable with respect to them), times ``encoder_discriminator``; the
        head's own weights get no gradient."""
        self.head.requires_grad_(False)
        try:
            cond = self.head.conditional_head(self.head(fake_regions), sentence)
        finally:
            self.head.requires_grad_(True)
        return self.cfg.encoder_discriminator * generator_adversarial_loss(cond.float(), None, self.cfg.adversarial_loss)

    def state_dict(self) -> dict[str, Any]:
        return {"head": self.head.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
        self.opt.load_state_dict(state["optimizer"])
