"""The papers' evaluation protocol: which samples, how many, and how they are cut into folds.

AttnGAN, DM-GAN and DF-GAN score 30,000 images generated from captions drawn by a shuffled
loader over the test split (so every class is represented whatever the count), and cut the
per-image results (R-precision hits, Inception class probabilities) into 10 parts *after a
shuffle*: the ± they print is sampling noise, not a difference between classes.

Here every random choice is explicit and recorded:

* sample order -- :func:`stratified_order`: each class's images in a seeded random order,
  interleaved in proportion to the class sizes, so any prefix of the order holds every class
  in proportion to its size (to within about one image; a class of ``n_c`` of the ``N``
  images is in every prefix longer than about ``N / n_c`` plus the number of classes: CUB's
  50 test species all appear within the first ~120 samples); seed ``[seed, 1]``.
* folds of R-precision -- :func:`shuffled_folds`, seed ``[seed, 2]``; splits of the Inception
  Score, seed ``[seed, 3]``; mismatched captions of sample ``k``, seed ``[seed, 4, k]``.

Seeds are ``numpy.random.default_rng`` seed sequences; records carry them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

# generated images per evaluation in the papers' tables (AttnGAN / DM-GAN / DF-GAN: 30,000)
PROTOCOL_SAMPLES: dict[str, int] = {"cub": 30_000, "coco": 30_000, "coco-json": 30_000}
DEFAULT_SAMPLES = 1_000  # other data sets (the shapes evaluation splits hold 1,000 scenes)
ORDER_STREAM, FOLD_STREAM, IS_SPLIT_STREAM, DISTRACTOR_STREAM = 1, 2, 3, 4


def protocol_samples(kind: str) -> int:
    """The default sample count for a data set kind: the papers' 30,000 for CUB and COCO."""
    return PROTOCOL_SAMPLES.get(kind, DEFAULT_SAMPLES)


def sample_count_warning(kind: str, num_samples: int) -> str | None:
    """A warning when fewer samples than the papers' are asked for on CUB / COCO, else None."""
    wanted = PROTOCOL_SAMPLES.get(kind)
    if wanted is None or num_samples >= wanted:
        return None
    return (f"{num_samples:,} samples: the papers' {kind} tables use {wanted:,}; R-precision, FID and IS from "
            "fewer samples are not comparable with them (FID in particular is biased upwards)")


def stream_seed(seed: int, stream: int, *index: int) -> list[int]:
    """The seed sequence ``[seed, stream, *index]`` of one of the protocol's random choices."""
    return [int(seed), int(stream), *(int(i) for i in index)]


def stratified_order(class_ids: Sequence[int] | np.ndarray, seed: int) -> np.ndarray:
    """A permutation ``[N]`` of the items that spreads every class over the whole order.

    Item ``j`` (0-based) of a class of ``n`` items, in a seeded random order within the class,
    gets the key ``(j + u) / n`` with ``u`` uniform in [0, 1); items are sorted by key (ties
    broken at random). So the first ``m`` items hold about ``m n / N`` of each class (to within
    about one), whatever order the split lists them in.
    """
    classes = np.asarray(class_ids).reshape(-1)
    n = classes.shape[0]
    rng = np.random.default_rng(stream_seed(seed, ORDER_STREAM))
    keys = np.empty(n, dtype=np.float64)
    for value in np.unique(classes):
        members = np.flatnonzero(classes == value)
        members = members[rng.permutation(members.shape[0])]
        keys[members] = (np.arange(members.shape[0]) + rng.random(members.shape[0])) / members.shape[0]
    tiebreak = rng.permutation(n)
    return np.lexsort((tiebreak, keys))


def shuffled_parts(n: int, parts: int, seed: Sequence[int]) -> list[np.ndarray]:
    """``parts`` near-equal index arrays: ``np.array_split(default_rng(seed).permutation(n), parts)``."""
    if not 1 <= parts <= n:
        raise ValueError(f"the number of folds must be between 1 and the number of samples ({n}), got {parts}")
    return np.array_split(np.random.default_rng(list(seed)).permutation(n), parts)


def shuffled_folds(values: torch.Tensor | np.ndarray, num_folds: int, seed: Sequence[int]) -> tuple[float, float]:
    """Mean and (population) std of the per-fold means of ``values [N]`` over ``num_folds``
    folds of a seeded shuffle (:func:`shuffled_parts`), as AttnGAN's R-precision reports them."""
    v = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be [N], got shape {v.shape}")
    means = [float(v[part].mean()) for part in shuffled_parts(v.shape[0], num_folds, seed)]
    return float(np.mean(means)), float(np.std(means))
