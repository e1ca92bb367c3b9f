"""Diversity for a fixed caption: generated spread over real spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attngan.data.common import to_tensor
from attngan.data.shapes import ShapesDataset, render_shapes
from attngan.data.shapes_captions import names_background
from attngan.metrics.diversity import (
    diversity_ratio,
    mean_pairwise_distance,
    pixel_features,
    shapes_captions_and_real_sets,
    shapes_diversity,
)


def test_mean_pairwise_distance() -> None:
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert mean_pairwise_distance(points) == pytest.approx((5 + 0 + 5) / 3)
    assert mean_pairwise_distance(torch.ones(4, 7)) == 0.0
    with pytest.raises(ValueError, match="N >= 2"):
        mean_pairwise_distance(torch.ones(1, 3))


def test_real_sets_share_each_captions_description() -> None:
    captions, reals = shapes_captions_and_real_sets("test", num_captions=6, num_real=4, image_size=32)
    data = ShapesDataset("test", size=6)
    assert captions == [data.caption_text(j, j) for j in range(6)]
    for j, real in enumerate(reals):
        assert real.shape == (4, 3, 32, 32) and real.min() >= -1 and real.max() <= 1
        assert not torch.equal(real[0], real[1])  # fresh jitter
        named = names_background(captions[j])
        variants = ShapesDataset("test", image_sizes=(32,), size=6).variants(j, 4, keep_background=named)
        assert torch.equal(real[0], to_tensor(np.asarray(render_shapes(variants[0].objects, variants[0].background,
                                                                       32))))
        for v in variants:  # the caption's objects; its background where it names one
            assert [o.attributes for o in v.objects] == [o.attributes for o in data.scene(j).objects]
            assert v.background == data.scene(j).background or not named


def test_ratio_is_one_for_real_draws_and_zero_for_a_collapsed_generator() -> None:
    captions, reals = shapes_captions_and_real_sets("validation", num_captions=4, num_real=6, image_size=32)
    calls = []

    def as_real(texts: list[str], seeds: list[int]) -> torch.Tensor:
        calls.append((texts, seeds))
        return reals[captions.index(texts[0])]

    same = diversity_ratio(as_real, captions, reals, pixel_features, num_seeds=6, seed=10)
    assert same["diversity_ratio"] == pytest.approx(1.0) and same["diversity_pixels_ratio"] == pytest.approx(1.0)
    assert calls[1] == ([captions[1]] * 6, list(range(16, 22)))  # caption j: seeds seed + j * N + i
    assert same["num_captions"] == 4 and same["num_seeds"] == 6

    def collapsed(texts: list[str], seeds: list[int]) -> torch.Tensor:
        return reals[0][:1].expand(len(seeds), -1, -1, -1)

    flat = diversity_ratio(collapsed, captions, lambda j: reals[j], pixel_features, num_seeds=6)
    assert flat["diversity_ratio"] == 0.0 and flat["diversity_real"] > 0

    def noisy(texts: list[str], seeds: list[int]) -> torch.Tensor:
        g = torch.Generator().manual_seed(seeds[0])
        return torch.rand(len(seeds), 3, 32, 32, generator=g) * 2 - 1

    assert shapes_diversity(noisy, pixel_features, "unseen", num_captions=2, num_seeds=3, image_size=32)[
        "diversity_ratio"] > 1.0  # noise is more varied than jitter
    with pytest.raises(ValueError, match="num_seeds"):
        diversity_ratio(noisy, captions, reals, pixel_features, num_seeds=1)
    with pytest.raises(ValueError, match="generate returned"):
        diversity_ratio(lambda t, s: torch.zeros(2, 3, 8, 8), captions, reals, pixel_features, num_seeds=3)
