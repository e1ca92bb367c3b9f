"""Adversarial and KL losses of AttnGAN as pure functions of logits.

The original passes sigmoid outputs to ``BCELoss``; these take raw logits and use
``binary_cross_entropy_with_logits``, which is the same loss computed stably (``kind="bce"``).
``kind="hinge"`` is the hinge loss of SAGAN / BigGAN / DF-GAN with the same composition of
terms. :func:`matching_aware_penalty` is DF-GAN's matching-aware gradient penalty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, overload

import torch
import torch.nn.functional as F

ADVERSARIAL_LOSSES = ("bce", "hinge")


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _term(logits: torch.Tensor, real: bool, kind: str) -> torch.Tensor:
    """The discriminator's term for logits that should read real (or fake): BCE or hinge."""
    if kind == "bce":
        return _bce(logits, 1.0 if real else 0.0)
    if kind == "hinge":
        return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()
    raise ValueError(f"adversarial loss must be one of {', '.join(ADVERSARIAL_LOSSES)}, got {kind!r}")


def _generator_term(logits: torch.Tensor, kind: str) -> torch.Tensor:
    return _bce(logits, 1.0) if kind == "bce" else -logits.mean()


def discriminator_loss(
    cond_real: torch.Tensor,
    cond_fake: torch.Tensor,
    cond_wrong: torch.Tensor,
    uncond_real: torch.Tensor | None = None,
    uncond_fake: torch.Tensor | None = None,
    wrong_scale: float = 1.0,
    kind: str = "bce",
    cond_hard: torch.Tensor | None = None,
    hard_rows: torch.Tensor | None = None,
    ranking: float = 0.0,
    cond_rounded: torch.Tensor | None = None,
) -> torch.Tensor:
    """One discriminator's loss (``kind``: ``bce``, the original's, or ``hinge``).

    Args:
        cond_real: ``[B]`` logits of real images with their captions.
        cond_fake: ``[B]`` logits of generated images with their captions.
        cond_wrong: ``[B-1]`` logits of real images with another sample's caption.
        uncond_real, uncond_fake: ``[B]`` unconditional logits, or None without that head.
        wrong_scale: multiplies the mismatched term's mean (used when the mismatched pairs
            of a global batch are split unevenly over processes).
        cond_hard: ``[M]`` logits of real images with counterfactual captions (hard negatives),
            or None: the mismatched term is then the mean of the two kinds' terms.
        hard_rows: ``[M]`` the rows of ``cond_real`` whose images ``cond_hard`` scores.
        ranking: weight of :func:`counterfactual_ranking_loss` of ``cond_real[hard_rows]`` against
            ``cond_hard`` added to the loss (0 or no ``cond_hard``: none; needs ``hard_rows``).
        cond_rounded: ``[R]`` logits of hard-negative images with the captions of their scenes (the
            scene drawn with rounded silhouettes), or None. Each kind of mismatched pair present
            (another caption, a counterfactual caption, a rounded image) weighs the same in the
            mismatched term.
    """
    real_c, fake_c = _term(cond_real, True, kind), _term(cond_fake, False, kind)
    wrong_c = _term(cond_wrong, False, kind) * wrong_scale if cond_wrong.numel() else cond_real.new_zeros(())
    kinds = [wrong_c] + [_term(extra, False, kind) for extra in (cond_hard, cond_rounded)
                         if extra is not None and extra.numel()]
    if len(kinds) > 1:
        wrong_c = torch.stack(kinds).mean()
    if uncond_real is None or uncond_fake is None:
        loss = real_c + (fake_c + wrong_c) / 2.0
    else:
        real_u, fake_u = _term(uncond_real, True, kind), _term(uncond_fake, False, kind)
        loss = (real_u + real_c) / 2.0 + (fake_u + fake_c + wrong_c) / 3.0
    if ranking > 0 and cond_hard is not None:
        if hard_rows is None:
            raise ValueError("the ranking term needs the rows hard_rows of the images cond_hard scores")
        loss = loss + ranking * counterfactual_ranking_loss(cond_real[hard_rows], cond_hard)
    return loss


def generator_adversarial_loss(cond_fake: torch.Tensor, uncond_fake: torch.Tensor | None = None,
                               kind: str = "bce") -> torch.Tensor:
    """Generator loss against one discriminator: ``[B]`` logits -> scalar."""
    loss = _generator_term(cond_fake, kind)
    if uncond_fake is not None:
        loss = loss + _generator_term(uncond_fake, kind)
    return loss


def matching_aware_penalty(cond_real: torch.Tensor, inputs: Sequence[torch.Tensor], weight: float = 2.0,
                           power: float = 6.0) -> torch.Tensor:
    """DF-GAN's matching-aware gradient penalty: ``weight * mean(||grad||^power)`` of the conditional
    logits of real images with their own captions, the gradient taken with respect to ``inputs``
    (the real images ``[B, 3, S, S]`` and the sentences ``[B, D]``, which must require gradients)
    and its norm over all of a sample's inputs together. Differentiable (for the discriminator's update).
    """
    grads = torch.autograd.grad(cond_real.float().sum(), list(inputs), create_graph=True)
    squared = grads[0].float().pow(2).flatten(1).sum(1)
    for g in grads[1:]:
        squared = squared + g.float().pow(2).flatten(1).sum(1)
    return weight * squared.sqrt().pow(power).mean()


def counterfactual_ranking_loss(own: torch.Tensor, counterfactual: torch.Tensor) -> torch.Tensor:
    """The logistic loss of ranking an image's own caption above a counterfactual one: ``[H]``
    conditional logits of images with their own captions and ``[H]`` of the same images with a
    counterfactual caption each -> scalar ``mean(softplus(counterfactual - own))`` (0 when H = 0)."""
    if own.shape != counterfactual.shape:
        raise ValueError(f"own {list(own.shape)} and counterfactual {list(counterfactual.shape)} logits differ in shape")
    if own.numel() == 0:
        return own.new_zeros((), dtype=torch.float32)
    return F.softplus(counterfactual.float() - own.float()).mean()


def mode_seeking_loss(images: torch.Tensor, twins: torch.Tensor, noise: torch.Tensor, twin_noise: torch.Tensor,
                      eps: float = 1e-5, shift_invariant: bool = False) -> torch.Tensor:
    """The mode-seeking term of MSGAN (Mao et al., 2019): ``[K, 3, S, S]`` images of K captions and
    ``[K, 3, S, S]`` twins of the same captions from other noise (``[K, Z]`` and ``[K, Z]``) -> scalar
    mean over pairs of ``1 / (mean|I - I'| / mean|z - z'| + eps)``: it falls as a caption's images
    move apart per unit of noise distance (a generator that ignores its noise scores 1 / eps).

    ``shift_invariant``: each pair's difference ``I - I'`` is measured from its per-channel median
    over the pixels, so changing the colour of most of the image (a background) earns nothing and
    the distance comes from what moves against it (objects, their places, sizes and tints)."""
    if images.shape != twins.shape or noise.shape != twin_noise.shape or images.shape[0] != noise.shape[0]:
        raise ValueError(f"images {list(images.shape)}, twins {list(twins.shape)}, noise {list(noise.shape)} and "
                         f"twin noise {list(twin_noise.shape)} do not pair up")
    difference = (images.float() - twins.float()).flatten(2)  # [K, 3, S*S]
    if shift_invariant:
        difference = difference - difference.median(dim=2, keepdim=True).values
    apart = difference.abs().flatten(1).mean(1)
    noise_apart = (noise.float() - twin_noise.float()).abs().mean(1)
    return (1.0 / (apart / noise_apart + eps)).mean()


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) averaged over elements, as the original: ``[B, C]`` -> scalar."""
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())


def generator_loss(
    adversarial_logits: Sequence[tuple[torch.Tensor, torch.Tensor | None]],
    damsm: Mapping[str, torch.Tensor],
    mu: torch.Tensor,
    logvar: torch.Tensor,
    damsm_weight: float | torch.Tensor,
    kl_weight: float = 1.0,
    kind: str = "bce",
) -> dict[str, torch.Tensor]:
    """AttnGAN's generator objective (paper eq. 3 and 14): the adversarial terms of every stage,
    the DAMSM terms of the last stage times ``damsm_weight`` (the original's LAMBDA), and the
    conditioning-augmentation KL times ``kl_weight``.

    Args:
        adversarial_logits: per discriminator, ``(conditional [B], unconditional [B] or None)``
            logits of the generated images.
        damsm: ``{"w0", "w1", "s0", "s1"}`` (see :func:`attngan.losses.damsm.damsm_losses`).
        damsm_weight: a float, or a scalar tensor (a compiled step's weight that changes during
            ``damsm_warmup`` is an input, not a constant built into the graph).
        mu, logvar: ``[B, C]`` of the conditioning augmentation.
    Returns:
        ``{"total", "adversarial", "damsm_words", "damsm_sentence", "kl"}`` (scalars; the last
        three already weighted).
    """
    adversarial = mu.new_zeros((), dtype=torch.float32)
    for cond, uncond in adversarial_logits:
        adversarial = adversarial + generator_adversarial_loss(cond.float(), None if uncond is None else uncond.float(),
                                                               kind)
    words = (damsm["w0"] + damsm["w1"]) * damsm_weight
    sentence = (damsm["s0"] + damsm["s1"]) * damsm_weight
    kl = kl_loss(mu.float(), logvar.float()) * kl_weight
    return {"total": adversarial + words + sentence + kl, "adversarial": adversarial, "damsm_words": words,
            "damsm_sentence": sentence, "kl": kl}


class DiscriminatorLogits(NamedTuple):
    """One discriminator's logits for a batch: real, generated and mismatched (real image,
    another sample's caption) pairs, ``[B]`` / ``[B]`` / ``[M]``, and the unconditional head's
    ``[B]`` for real and generated images (None without that head); ``cond_hard [H]``: real
    images with counterfactual captions (None without hard negatives); ``cond_rounded [R]``: rounded
    renderings of real scenes with their own captions (None without rounded negatives)."""

    cond_real: torch.Tensor
    cond_fake: torch.Tensor
    cond_wrong: torch.Tensor
    uncond_real: torch.Tensor | None = None
    uncond_fake: torch.Tensor | None = None
    cond_hard: torch.Tensor | None = None
    cond_rounded: torch.Tensor | None = None


def discriminators_loss(logits: Sequence[DiscriminatorLogits], wrong_scale: float = 1.0, kind: str = "bce",
                        hard_rows: torch.Tensor | None = None,
                        ranking: float = 0.0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The discriminators' objective: the sum of :func:`discriminator_loss` over stages (each
    discriminator's parameters get the gradient of its own term only, as with one update each).

    Args:
        logits: per discriminator, ``cond_real``, ``cond_fake``, ``cond_wrong``, ``uncond_real``,
            ``uncond_fake`` (or None) and optionally ``cond_hard`` and ``cond_rounded`` logits.
        wrong_scale, kind, hard_rows, ranking: as for :func:`discriminator_loss`.
    Returns:
        ``(sum, per-discriminator losses)``.
    """
    parts = [discriminator_loss(_f32(lg.cond_real), _f32(lg.cond_fake), _f32(lg.cond_wrong),
                                _f32(lg.uncond_real), _f32(lg.uncond_fake), wrong_scale, kind, _f32(lg.cond_hard),
                                hard_rows, ranking, _f32(lg.cond_rounded))
             for lg in logits]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total, parts


@overload
def _f32(t: torch.Tensor) -> torch.Tensor: ...
@overload
def _f32(t: None) -> None: ...
def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()
