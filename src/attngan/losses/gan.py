"""Adversarial and KL losses of AttnGAN as pure functions of logits.

The original passes sigmoid outputs to ``BCELoss``; these take raw logits and use
``binary_cross_entropy_with_logits``, which is the same loss computed stably.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(
    cond_real: torch.Tensor,
    cond_fake: torch.Tensor,
    cond_wrong: torch.Tensor,
    uncond_real: torch.Tensor | None = None,
    uncond_fake: torch.Tensor | None = None,
    wrong_scale: float = 1.0,
) -> torch.Tensor:
    """One discriminator's loss.

    Args:
        cond_real: ``[B]`` logits of real images with their captions.
        cond_fake: ``[B]`` logits of generated images with their captions.
        cond_wrong: ``[B-1]`` logits of real images with another sample's caption.
        uncond_real, uncond_fake: ``[B]`` unconditional logits, or None without that head.
        wrong_scale: multiplies the mismatched term's mean (used when the mismatched pairs
            of a global batch are split unevenly over processes).
    """
    real_c, fake_c = _bce(cond_real, 1.0), _bce(cond_fake, 0.0)
    wrong_c = _bce(cond_wrong, 0.0) * wrong_scale if cond_wrong.numel() else cond_real.new_zeros(())
    if uncond_real is None or uncond_fake is None:
        return real_c + (fake_c + wrong_c) / 2.0
    real_u, fake_u = _bce(uncond_real, 1.0), _bce(uncond_fake, 0.0)
    return (real_u + real_c) / 2.0 + (fake_u + fake_c + wrong_c) / 3.0


def generator_adversarial_loss(cond_fake: torch.Tensor, uncond_fake: torch.Tensor | None = None) -> torch.Tensor:
    """Generator loss against one discriminator: ``[B]`` logits -> scalar."""
    loss = _bce(cond_fake, 1.0)
    if uncond_fake is not None:
        loss = loss + _bce(uncond_fake, 1.0)
    return loss


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) averaged over elements, as the original: ``[B, C]`` -> scalar."""
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


def generator_loss(
    adversarial_logits: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
    damsm: Mapping[str, torch.Tensor],
    mu: torch.Tensor,
    logvar: torch.Tensor,
    damsm_weight: float,
    kl_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """AttnGAN's generator objective (paper eq. 3 and 14): the adversarial terms of every stage,
    the DAMSM terms of the last stage times ``damsm_weight`` (the original's LAMBDA), and the
    conditioning-augmentation KL times ``kl_weight``.

    Args:
        adversarial_logits: per discriminator, ``(conditional [B], unconditional [B] or None)``
            logits of the generated images.
        damsm: ``{"w0", "w1", "s0", "s1"}`` (see :func:`attngan.losses.damsm.damsm_losses`).
        mu, logvar: ``[B, C]`` of the conditioning augmentation.
    Returns:
        ``{"total", "adversarial", "damsm_words", "damsm_sentence", "kl"}`` (scalars; the last
        three already weighted).
    """
    adversarial = mu.new_zeros((), dtype=torch.float32)
    for cond, uncond in adversarial_logits:
        adversarial = adversarial + generator_adversarial_loss(cond.float(), None if uncond is None else uncond.float())
    words = (damsm["w0"] + damsm["w1"]) * damsm_weight
    sentence = (damsm["s0"] + damsm["s1"]) * damsm_weight
    kl = kl_loss(mu.float(), logvar.float()) * kl_weight
    return {"total": adversarial + words + sentence + kl, "adversarial": adversarial, "damsm_words": words,
            "damsm_sentence": sentence, "kl": kl}


def discriminators_loss(logits: Sequence[Mapping[str, torch.Tensor | None]],
                        wrong_scale: float = 1.0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The discriminators' objective: the sum of :func:`discriminator_loss` over stages (each
    discriminator's parameters get the gradient of its own term only, as with one update each).

    Args:
        logits: per discriminator, ``cond_real``, ``cond_fake``, ``cond_wrong`` and
            ``uncond_real``, ``uncond_fake`` (or None) logits.
    Returns:
        ``(sum, per-discriminator losses)``.
    """
    parts = [discriminator_loss(_f32(lg["cond_real"]), _f32(lg["cond_fake"]), _f32(lg["cond_wrong"]),
                                _f32(lg.get("uncond_real")), _f32(lg.get("uncond_fake")), wrong_scale)
             for lg in logits]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total, parts


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()
