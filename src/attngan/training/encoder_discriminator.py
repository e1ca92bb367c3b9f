"""The encoder discriminator of a GAN run (``encoder_discriminator`` > 0): a trainable conditional
head (:class:`~attngan.models.discriminator.FeatureDiscriminator`) over the frozen DAMSM image
encoder's region features of the last stage's images, trained beside the per-stage
discriminators with the same adversarial loss; the generator's term through it is weighted by
``encoder_discriminator``.

The encoder knows each word on real images (it was trained for it), but the generator learns to
please its fixed word scores with a texture; a head that keeps learning from the generated images
takes that texture apart again, and it starts from features that tell the words apart, where the
per-stage discriminators learn shape from pixels late or never (``benchmarks/discriminator_probe.py``).
With ``encoder_discriminator_trainable`` the features learn too: the head's own copy of the encoder
(BatchNorms folded, so it starts as the same function) is trained with it, while the generator's
DAMSM term keeps the frozen encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..losses.gan import discriminator_loss, generator_adversarial_loss
from ..models.discriminator import FeatureDiscriminator
from ..models.layers import init_weights_original
from ..precision import autocast
from .augment import shift_images
from .distributed import DistInfo
from .fast_layers import fold_frozen_batchnorms
from .gan_step import Mismatched
from .optim import adam
from .options import GANTrainConfig


class _Judge(nn.Module):
    """The trained part: ``[B, C, h, w]`` region features -> head features, or, with a ``backbone``
    (a trainable copy of the image encoder), ``[B, 3, S, S]`` images -> head features."""

    def __init__(self, head: FeatureDiscriminator, backbone: nn.Module | None) -> None:
        super().__init__()
        self.head, self.backbone = head, backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[0] if self.backbone is not None else x)


class EncoderDiscriminator:
    """Holds the head (and, with ``encoder_discriminator_trainable``, its own copy of the image
    encoder, BatchNorms folded, trained with it) and their optimiser; :meth:`update_on_images` trains
    them on one batch, :meth:`generator_loss` gives the generator's weighted term."""

    def __init__(self, cfg: GANTrainConfig, encoder: nn.Module, feature_dim: int, text_dim: int,
                 dist: DistInfo) -> None:
        self.cfg = cfg
        d = cfg.discriminator
        self.head = FeatureDiscriminator(feature_dim, text_dim, d.channels, d.spectral_norm)
        self.head.apply(init_weights_original)
        backbone = None
        if cfg.encoder_discriminator_trainable:  # starts as the same function of the image
            backbone = fold_frozen_batchnorms(encoder).to(memory_format=torch.contiguous_format).requires_grad_(True)
        self.judge = _Judge(self.head, backbone).to(dist.device).train()
        self.opt = adam(self.judge.parameters(), cfg.optim_d, dist.device, cfg.run.speed.fused_adam)
        # the backbone's global branch is computed but unused: DistributedDataParallel must know
        self.forward: nn.Module = (DistributedDataParallel(self.judge, find_unused_parameters=backbone is not None)
                                   if dist.enabled else self.judge)

    def update(self, real_regions: torch.Tensor, fake_regions: torch.Tensor, sentence: torch.Tensor,
               pairs: Mismatched) -> float:
        """One Adam update on real and generated region features ``[B, C, h, w]`` (images ``[B, 3, S, S]``
        with the trainable backbone; no gradient to either) with their sentences ``[B, D]``, the
        mismatched and the counterfactual pairs of ``pairs``; returns the loss."""
        cfg = self.cfg
        head, cond_hard = self.head.conditional_head, None
        with autocast(cfg.run.precision, real_regions.device):
            # one forward over both (a DistributedDataParallel module runs once per backward)
            real_f, fake_f = self.forward(torch.cat((real_regions, fake_regions)).detach()).chunk(2)
            cond_real, cond_fake = head(real_f, sentence), head(fake_f, sentence)
            cond_wrong = head(real_f[pairs.rows], pairs.sentence)
            if pairs.hard_sentence is not None and pairs.hard_rows is not None:
                cond_hard = head(real_f[pairs.hard_rows], pairs.hard_sentence)
        loss = discriminator_loss(cond_real.float(), cond_fake.float(), cond_wrong.float(), wrong_scale=pairs.scale,
                                  kind=cfg.adversarial_loss, cond_hard=None if cond_hard is None else cond_hard.float(),
                                  hard_rows=pairs.hard_rows, ranking=cfg.hard_negatives.discriminator_ranking)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def update_on_images(self, encoder: nn.Module, real: torch.Tensor, fake: torch.Tensor, sentence: torch.Tensor,
                         pairs: Mismatched, shifts: Sequence[torch.Tensor] | None = None) -> float:
        """:meth:`update` on real and generated images ``[B, 3, S, S]`` (no gradient to them), each first
        moved by its ``(dy, dx)`` of ``shifts`` (``[B, 2]`` for the real, then for the generated
        images; None: unmoved): through the trainable backbone, or as the region features of
        ``encoder`` (the frozen image encoder)."""
        if shifts is not None:
            real, fake = shift_images(real, shifts[0]), shift_images(fake, shifts[1])
        images = torch.cat((real, fake)).detach()
        if self.judge.backbone is None:
            with torch.no_grad(), autocast(self.cfg.run.precision, real.device):
                images = encoder(images)[0].float()
        real_x, fake_x = images.chunk(2)
        return self.update(real_x, fake_x, sentence, pairs)

    def generator_loss(self, fake_regions: torch.Tensor, sentence: torch.Tensor,
                       fake_images: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's adversarial term through the head, times ``encoder_discriminator``, for the
        frozen encoder's region features ``[B, C, h, w]`` of its images, or (with the trainable
        backbone) for the images ``[B, 3, S, S]`` themselves; differentiable with respect to them,
        while the trained weights get no gradient."""
        if self.judge.backbone is not None and fake_images is None:
            raise ValueError("the trainable encoder discriminator judges the images: give fake_images")
        self.judge.requires_grad_(False)
        try:
            with autocast(self.cfg.run.precision, sentence.device):
                features = self.judge(fake_images) if self.judge.backbone is not None else self.head(fake_regions)
                cond = self.head.conditional_head(features, sentence)
        finally:
            self.judge.requires_grad_(True)
        return self.cfg.encoder_discriminator * generator_adversarial_loss(cond.float(), None, self.cfg.adversarial_loss)

    def trained_modules(self) -> dict[str, nn.Module]:
        """The modules it trains, by name: ``head``, and ``backbone`` where trainable."""
        backbone = self.judge.backbone
        return {"head": self.head, **({"backbone": backbone} if backbone is not None else {})}

    def state_dict(self) -> dict[str, Any]:
        backbone = self.judge.backbone
        return {"head": self.head.state_dict(), "optimizer": self.opt.state_dict(),
                **({"backbone": backbone.state_dict()} if backbone is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
        if self.judge.backbone is not None:
            if "backbone" not in state:
                raise ValueError("the checkpoint's encoder discriminator has no trainable backbone")
            self.judge.backbone.load_state_dict(state["backbone"])
        self.opt.load_state_dict(state["optimizer"])
