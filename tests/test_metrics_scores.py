"""Inception Score and R-precision on features with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from attngan.metrics.inception_score import inception_score, inception_score_from_logits
from attngan.metrics.r_precision import (
    CaptionPool,
    compute_r_precision,
    fold_summary,
    r_precision_from_features,
)


def test_is_of_uniform_predictions_is_one() -> None:
    mean, std = inception_score(torch.full((100, 7), 1 / 7), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("k", [2, 10, 50])
def test_is_of_confident_distinct_predictions_is_k(k: int) -> None:
    labels = torch.arange(k).repeat(20)  # equal counts; every split of 2k holds each class twice
    mean, std = inception_score(torch.eye(k)[labels], splits=10)
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_is_from_logits_and_input_checks() -> None:
    logits = torch.eye(4).repeat(5, 1) * 100
    assert inception_score_from_logits(logits, splits=5)[0] == pytest.approx(4, rel=1e-6)
    with pytest.raises(ValueError, match="softmax"):
        inception_score(torch.ones(4, 3), splits=2)
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.full((4, 3), 1 / 3), splits=5)


def test_is_matches_a_direct_formula() -> None:
    p = torch.softmax(torch.randn(60, 5, generator=torch.Generator().manual_seed(0)) * 3, 1).double().numpy()
    scores = []
    for part in np.split(p, 3):
        py = part.mean(0)
        scores.append(np.exp(np.mean([np.sum(row * np.log(row / py)) for row in part])))
    mean, std = inception_score(p, splits=3)
    assert mean == pytest.approx(np.mean(scores)) and std == pytest.approx(np.std(scores))


def test_r_precision_of_perfect_features_is_one() -> None:
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(200, 16, generator=g)
    distractors = torch.randn(200, 99, 16, generator=g)
    hits = r_precision_from_features(codes, codes * 3.0, distractors)
    assert hits.dtype == torch.bool and hits.all()
    assert fold_summary(hits, 10) == (1.0, 0.0)


def test_r_precision_of_random_features_is_one_in_a_hundred() -> None:
    g = torch.Generator().manual_seed(1)
    n = 6000
    hits = r_precision_from_features(torch.randn(n, 32, generator=g), torch.randn(n, 32, generator=g),
                                     torch.randn(n, 99, 32, generator=g))
    mean, std = fold_summary(hits, 10)
    assert mean == pytest.approx(0.01, abs=0.004)  # 1/100; sampling std of the mean ~0.0013
    assert 0 < std < 0.01


def test_ties_count_as_misses_and_shapes_are_checked() -> None:
    codes = torch.ones(3, 4)
    assert not r_precision_from_features(codes, codes, codes[:, None].repeat(1, 5, 1)).any()
    with pytest.raises(ValueError, match="distractor_sentences"):
        r_precision_from_features(codes, codes, torch.ones(3, 5, 2))


def test_fold_summary_mean_and_std() -> None:
    values = torch.tensor([1, 1, 0, 0, 1, 0, 1, 1, 1, 0], dtype=torch.bool)
    mean, std = fold_summary(values, 5)  # folds: 1, 0, 0.5, 1, 0.5
    assert mean == pytest.approx(0.6) and std == pytest.approx(np.std([1, 0, 0.5, 1, 0.5]))
    with pytest.raises(ValueError, match="num_folds"):
        fold_summary(values, 11)


def test_caption_pool_draws_only_other_classes() -> None:
    tokens = torch.arange(40).view(20, 2)
    pool = CaptionPool(tokens, torch.full((20,), 2), torch.arange(20) % 4)
    rng = np.random.default_rng(0)
    drawn, lengths = pool.sample_mismatched(1, 15, rng)
    assert drawn.shape == (15, 2) and lengths.shape == (15,)
    assert ((drawn[:, 0] // 2) % 4 != 1).all()
    assert len(set(drawn[:, 0].tolist())) == 15  # without replacement when enough captions


def test_caption_pool_from_token_lists() -> None:
    pool = CaptionPool.from_captions([[5, 6, 7, 8], [9], [3, 4]], [0, 1, 1], max_words=3)
    assert pool.tokens.tolist() == [[5, 6, 7], [9, 0, 0], [3, 4, 0]] and pool.lengths.tolist() == [3, 1, 2]
    drawn, _ = pool.sample_mismatched(1, 4, np.random.default_rng(0))
    assert drawn.tolist() == [[5, 6, 7]] * 4  # one mismatched caption: drawn with replacement


class ClassTextEncoder(nn.Module):
    """Sentence feature = one-hot of the class stored in the first token (token = class + 1)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sentence = nn.functional.one_hot(tokens[:, 0] - 1, self.classes).float()
        return sentence[:, :, None], sentence


class ClassImageEncoder(nn.Module):
    """Global code = one-hot of the class stored in the top-left pixel (value class / 10)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = nn.functional.one_hot((images[:, 0, 0, 0] * 10).round().long(), self.classes).float()
        return code[:, :, None, None], code


def batches_for(class_ids: torch.Tensor, batch: int = 16):
    for i in range(0, len(class_ids), batch):
        c = class_ids[i:i + batch]
        images = torch.zeros(len(c), 3, 8, 8)
        images[:, 0, 0, 0] = c.float() / 10
        tokens = torch.stack([c + 1, torch.ones_like(c)], dim=1)
        yield {"images": images, "tokens": tokens, "lengths": torch.full((len(c),), 2), "class_ids": c}


def test_r_precision_driver_with_encoders_that_rank_perfectly() -> None:
    classes = 8
    pool_classes = torch.arange(200) % classes
    pool = CaptionPool(torch.stack([pool_classes + 1, torch.ones(200, dtype=torch.long)], 1),
                       torch.full((200,), 2), pool_classes)
    result = compute_r_precision(ClassImageEncoder(classes), ClassTextEncoder(classes),
                                 batches_for(torch.arange(50) % classes), pool, num_distractors=99, num_folds=10)
    assert result["r_precision"] == 1.0 and result["r_precision_std"] == 0.0 and result["num_samples"] == 50
    # the same encoders with captions of the wrong class never find the true caption
    shuffled = (dict(b, tokens=torch.stack([(b["class_ids"] + 1) % classes + 1, b["tokens"][:, 1]], 1))
                for b in batches_for(torch.arange(50) % classes))
    assert compute_r_precision(ClassImageEncoder(classes), ClassTextEncoder(classes), shuffled, pool,
                               num_distractors=20, num_folds=5)["r_precision"] == 0.0
