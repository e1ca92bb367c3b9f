"""The random inputs of generation: per image, the noise ``z`` and the conditioning-augmentation
noise ``eps``, each drawn from the image's own seed, optionally from a truncated normal.

Truncation, as DF-GAN samples (its ``truncated_noise``: ``trunc_rate * truncnorm.rvs(-2, 2)``,
``trunc_rate`` 0.88 in its sampling configurations, after BigGAN's truncation trick): every
value comes from the standard normal *restricted to* [-2, 2] -- neither clamped (no mass piles
up at +-2) nor shifted, the distribution one gets by redrawing every value outside the interval
-- and is then multiplied by the truncation value ``t``, so it lies in [-2 t, 2 t]. Values are
drawn by inverting the normal CDF on a uniform draw (what scipy's ``truncnorm`` does), so each
value costs one uniform number from the seed's generator, whatever the bounds.

``t = 1.0`` means *off*: the untruncated normal of training, ``torch.randn`` exactly as without
truncation, so the default output is bit for bit the output of a pipeline that has no
truncation at all. (DF-GAN's function at ``trunc_rate`` 1.0 would still cut at +-2; here only
``t < 1`` truncates.) AttnGAN has two noise inputs where DF-GAN has one: both ``z`` and the
conditioning-augmentation noise ``eps`` (``c = mu + sigma * eps``) are drawn so, which is what
lowers the variety of the images of one caption.

Candidates (:mod:`attngan.inference.candidates`): an image drawn as the best of ``K`` candidates
takes candidate ``k``'s noise as the ``k``-th ``(z, eps)`` pair of its seed's generator, so
candidate 0 is the image's noise without candidates.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from ..errors import SettingError

TRUNCATION_BOUND = 2.0  # DF-GAN's truncnorm.rvs(-2, 2)


def check_truncation(truncation: float) -> float:
    """``truncation`` as a float in (0, 1], or a :class:`~attngan.errors.SettingError` of field
    ``truncation`` (a TypeError for what is not a real number)."""
    if isinstance(truncation, bool) or not isinstance(truncation, numbers.Real):
        raise TypeError(f"truncation must be a number in (0, 1], got {type(truncation).__name__}")
    value = float(truncation)
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise SettingError("truncation", f"must be in (0, 1] (1.0: off), got {truncation}")
    return value


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def truncated_normal(count: int, generator: torch.Generator, bound: float = TRUNCATION_BOUND) -> torch.Tensor:
    """``[count]`` float32 values of the standard normal restricted to ``[-bound, bound]``: the
    inverse normal CDF of ``count`` uniform numbers drawn from ``generator`` over
    ``[Phi(-bound), Phi(bound)]`` (computed in float64)."""
    low, high = _normal_cdf(-bound), _normal_cdf(bound)
    u = torch.rand(count, generator=generator, dtype=torch.float64)
    p = low + u * (high - low)
    x = math.sqrt(2.0) * torch.erfinv(2.0 * p - 1.0)
    return x.clamp(-bound, bound).float()  # the clamp only guards the last ulp of erfinv


def draw(count: int, generator: torch.Generator, truncation: float) -> torch.Tensor:
    """``[count]`` noise values: ``torch.randn`` when ``truncation`` is 1.0, else
    ``truncation * truncated_normal(...)`` (see the module doc)."""
    if truncation >= 1.0:
        return torch.randn(count, generator=generator)
    return truncation * truncated_normal(count, generator)


def draw_noise(seeds: Sequence[int], noise_dim: int, condition_dim: int, truncation: float = 1.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, ``(z [N, noise_dim], eps [N, condition_dim])`` on the CPU, image ``i`` from a
    generator seeded with ``seeds[i]`` (``z`` first, then ``eps``): candidate 0 of
    :func:`draw_candidate_noise`."""
    return draw_candidate_noise(seeds, noise_dim, condition_dim, truncation, 1)[0]


def draw_candidate_noise(seeds: Sequence[int], noise_dim: int, condition_dim: int, truncation: float,
                         candidates: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``candidates`` noise draws per image: item ``k`` is ``(z [N, noise_dim], eps [N, condition_dim])``
    of candidate ``k``, the ``k``-th ``(z, eps)`` pair drawn from the generator seeded with
    ``seeds[i]``; item 0 equals :func:`draw_noise`."""
    truncation = check_truncation(truncation)
    if candidates < 1:
        raise SettingError("candidates", f"must be >= 1, got {candidates}")
    per_image = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        pairs = []
        for _ in range(candidates):
            z = draw(noise_dim, g, truncation)
            pairs.append((z, draw(condition_dim, g, truncation)))
        per_image.append(pairs)
    return [(torch.stack([p[k][0] for p in per_image]), torch.stack([p[k][1] for p in per_image]))
            for k in range(candidates)]
