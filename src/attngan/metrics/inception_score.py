"""Inception Score from class probabilities: ``exp(E_x KL(p(y|x) || p(y)))`` per split, mean and std."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .protocol import shuffled_parts


def inception_score(probabilities: torch.Tensor | np.ndarray, splits: int = 10, eps: float = 1e-12,
                    seed: Sequence[int] | None = None) -> tuple[float, float]:
    """Inception Score of class probabilities ``[N, K]`` (rows sum to 1).

    The samples are cut into ``splits`` parts: contiguous in the order given (``seed`` None,
    as the improved-GAN code cuts them) or those of a seeded shuffle
    (:func:`~attngan.metrics.protocol.shuffled_parts`, as StackGAN's birds code shuffles
    before cutting); in each, ``p(y)`` is the part's mean prediction and the score is
    ``exp(mean_x KL(p(y|x) || p(y)))``. Returns ``(mean, std)`` over the parts (population
    std, as ``np.std``). Uniform predictions give 1; confident predictions spread equally
    over K classes give K.
    """
    p = probabilities.detach().to("cpu", torch.float64).numpy() if isinstance(probabilities, torch.Tensor) \
        else np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be [N, K], got shape {p.shape}")
    n = p.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be between 1 and the number of samples ({n}), got {splits}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probabilities must be non-negative and each row must sum to 1 (apply softmax first)")
    scores = []
    parts = np.array_split(p, splits, axis=0) if seed is None else [p[ix] for ix in shuffled_parts(n, splits, seed)]
    for part in parts:
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + eps) - np.log(marginal + eps))).sum(axis=1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score_from_logits(logits: torch.Tensor, splits: int = 10,
                                seed: Sequence[int] | None = None) -> tuple[float, float]:
    """:func:`inception_score` of ``softmax(logits [N, K])``, computed in float64."""
    return inception_score(torch.softmax(logits.detach().double(), dim=1), splits, seed=seed)
