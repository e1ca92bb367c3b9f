"""Diversity for a fixed caption: do N seeds give images as varied as N real images of it?

For each caption, the mean pairwise Euclidean distance between the features of the images
generated from N seeds is compared with the same figure for N real images of the caption's
description. Reported: both means (averaged over captions) and their ratio, generated /
real (1: as varied as real data; near 0: one image whatever the seed). The features are
those of a network trained on the real data (the attribute classifier's penultimate layer,
which sees placement, scale and tint) and, as a cross-check, raw pixels at 32 x 32.

:func:`diversity_ratio` takes any ``generate(captions, seeds) -> images`` and real image
sets; :func:`shapes_diversity` builds the captions and real sets from a shapes split, real
sets being fresh renderings of the caption's scene (:meth:`ShapesDataset.variants`: new
jitter; a random background when the caption does not name it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Generate = Callable[[list[str], list[int]], torch.Tensor]
Features = Callable[[torch.Tensor], torch.Tensor]


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean Euclidean distance over the ``N (N - 1) / 2`` pairs of rows of ``features [N, D]`` (N >= 2)."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D], got {tuple(features.shape)}")
    x = features.double()
    n = x.shape[0]
    d = torch.cdist(x, x)
    return float(d.sum() / (n * (n - 1)))


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` -> ``[N, 3 * 32 * 32]``: the images at 32 x 32 (area-averaged), flattened."""
    return F.adaptive_avg_pool2d(images.float(), 32).flatten(1)


def diversity_ratio(generate: Generate, captions: Sequence[str], real_images: Sequence[torch.Tensor] | Callable[
        [int], torch.Tensor], features: Features, num_seeds: int = 8, seed: int = 0) -> dict[str, Any]:
    """Diversity of ``generate`` over ``captions`` against real image sets.

    Args:
        generate: ``generate(captions, seeds) -> [N, 3, H, W]`` in [-1, 1], image i from
            ``captions[i]`` and ``seeds[i]`` (e.g. ``lambda c, s: pipe(c, seed=s).images[-1]``).
        captions: M captions; caption j is generated with seeds ``seed + j * num_seeds + i``.
        real_images: per caption, real images ``[N_j >= 2, 3, H, W]`` of its description (or
            a function of j returning them).
        features: ``images -> [N, D]`` (e.g. ``classifier.features``).
        num_seeds: N >= 2.
    Returns:
        ``diversity_generated`` / ``diversity_real`` (mean pairwise feature distance, averaged
        over captions), ``diversity_ratio`` (generated / real), the same three for pixels
        (``diversity_pixels_*``), ``num_captions`` and ``num_seeds``.
    """
    if num_seeds < 2:
        raise ValueError(f"num_seeds must be >= 2 (distances need pairs), got {num_seeds}")
    if not captions:
        raise ValueError("diversity needs at least one caption")
    sums = {"gen": 0.0, "real": 0.0, "gen_px": 0.0, "real_px": 0.0}
    for j, caption in enumerate(captions):
        seeds = [seed + j * num_seeds + i for i in range(num_seeds)]
        fake = generate([caption] * num_seeds, seeds).float().clamp(-1, 1)
        if fake.dim() != 4 or fake.shape[0] != num_seeds:
            raise ValueError(f"generate returned {tuple(fake.shape)} for {num_seeds} seeds; expected [N, 3, H, W]")
        real = (real_images(j) if callable(real_images) else real_images[j]).float()
        if real.dim() != 4 or real.shape[0] < 2:
            raise ValueError(f"real images of caption {j} must be [N >= 2, 3, H, W], got {tuple(real.shape)}")
        with torch.no_grad():
            sums["gen"] += mean_pairwise_distance(features(fake).cpu())
            sums["real"] += mean_pairwise_distance(features(real).cpu())
        sums["gen_px"] += mean_pairwise_distance(pixel_features(fake.cpu()))
        sums["real_px"] += mean_pairwise_distance(pixel_features(real.cpu()))
    m = len(captions)
    out: dict[str, Any] = {}
    for suffix, gen_key, real_key in (("", "gen", "real"), ("_pixels", "gen_px", "real_px")):
        out[f"diversity{suffix}_generated"] = sums[gen_key] / m
        out[f"diversity{suffix}_real"] = sums[real_key] / m
        out[f"diversity{suffix}_ratio"] = sums[gen_key] / sums[real_key] if sums[real_key] > 0 else float("nan")
    out.update({"num_captions": m, "num_seeds": num_seeds})
    return out


def shapes_captions_and_real_sets(split: str = "test", num_captions: int = 50, num_real: int = 8,
                                  image_size: int = 64, data_seed: int = 0) -> tuple[list[str], list[torch.Tensor]]:
    """The evaluation captions of the first ``num_captions`` images of a shapes split and, for
    each, ``num_real`` real renderings of its description ``[num_real, 3, S, S]`` in [-1, 1]."""
    from ..data.common import to_tensor
    from ..data.shapes import ShapesDataset
    from ..data.shapes_captions import names_background

    dataset = ShapesDataset(split, image_sizes=(image_size,), size=num_captions, seed=data_seed, train=False)
    captions, reals = [], []
    for j in range(num_captions):
        caption = dataset.caption_text(j, j % dataset.captions_per_image)  # the caption evaluation uses first
        variants = dataset.variants(j, num_real, keep_background=names_background(caption))
        captions.append(caption)
        reals.append(torch.stack([to_tensor(np.asarray(dataset.render(v))) for v in variants]))
    return captions, reals


def shapes_diversity(generate: Generate, features: Features, split: str = "test", num_captions: int = 50,
                     num_seeds: int = 8, seed: int = 0, image_size: int = 64) -> dict[str, Any]:
    """:func:`diversity_ratio` over the first ``num_captions`` evaluation captions of a shapes
    split, against ``num_seeds`` real renderings of each caption's description."""
    captions, reals = shapes_captions_and_real_sets(split, num_captions, num_seeds, image_size)
    return diversity_ratio(generate, captions, reals, features, num_seeds, seed)
