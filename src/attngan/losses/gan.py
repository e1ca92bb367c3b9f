"""Adversarial and KL losses of AttnGAN as pure functions of logits.

The original passes sigmoid outputs to ``BCELoss``; these take raw logits and use
``binary_cross_entropy_with_logits``, which is the same loss computed stably.
"""

from __future__ import annotations

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
