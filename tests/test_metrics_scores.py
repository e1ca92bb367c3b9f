"""Inception Score and R-precision on features with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from attngan.metrics.inception_score import inception_score, inception_score_from_logits
from attngan.metrics.protocol import shuffled_folds
from attngan.metrics.r_precision import CaptionPool, r_precision_from_features


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
    assert shuffled_folds(hits, 10, [0, 2]) == (1.0, 0.0)


def test_r_precision_of_random_features_is_one_in_a_hundred() -> None:
    g = torch.Generator().manual_seed(1)
    n = 6000
    hits = r_precision_from_features(torch.randn(n, 32, generator=g), torch.randn(n, 32, generator=g),
                                     torch.randn(n, 99, 32, generator=g))
    mean, std = shuffled_folds(hits, 10, [1, 2])
    assert mean == pytest.approx(0.01, abs=0.004)  # 1/100; sampling std of the mean ~0.0013
    assert 0 < std < 0.01


def test_ties_count_as_hits_as_the_reference_argmax_does_and_shapes_are_checked() -> None:
    codes = torch.ones(3, 4)
    assert r_precision_from_features(codes, codes, codes[:, None].repeat(1, 5, 1)).all()
    # the reference: argmax over [true, distractors] of the cosine similarities; index 0 = a hit
    g = torch.Generator().manual_seed(3)
    image, true = torch.randn(50, 4, generator=g), torch.randn(50, 4, generator=g)
    distract = torch.randn(50, 7, 4, generator=g)
    distract[::5, 2] = true[::5] * 2.0  # a tie in every fifth row (same direction as the true caption)
    candidates = torch.cat([true[:, None], distract], dim=1).double()
    cosine = torch.nn.functional.cosine_similarity(image.double()[:, None], candidates, dim=2)
    reference = cosine.argmax(dim=1) == 0
    assert torch.equal(r_precision_from_features(image, true, distract), reference)
    with pytest.raises(ValueError, match="distractor_sentences"):
        r_precision_from_features(codes, codes, torch.ones(3, 5, 2))


def test_shuffled_folds_are_those_of_the_recorded_seed() -> None:
    values = torch.tensor([1, 1, 0, 0, 1, 0, 1, 1, 1, 0], dtype=torch.bool)
    order = np.random.default_rng([4, 2]).permutation(10)  # folds of 2 in the shuffled order
    means = [values[order[i:i + 2]].double().mean().item() for i in range(0, 10, 2)]
    assert shuffled_folds(values, 5, [4, 2]) == pytest.approx((np.mean(means), np.std(means)))
    assert shuffled_folds(values, 5, [4, 2])[0] == pytest.approx(0.6)  # equal folds: the overall mean
    with pytest.raises(ValueError, match="folds"):
        shuffled_folds(values, 11, [4, 2])


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


def test_retrieval_hits_with_encoders_that_rank_perfectly() -> None:
    from attngan.metrics.builtin.retrieval import retrieval_hits

    classes = 8
    pool_classes = torch.arange(200) % classes
    pool = CaptionPool(torch.stack([pool_classes + 1, torch.ones(200, dtype=torch.long)], 1),
                       torch.full((200,), 2), pool_classes)
    c = torch.arange(50) % classes
    codes = nn.functional.one_hot(c, classes).float()  # image codes that show their class
    tokens = torch.stack([c + 1, torch.ones_like(c)], dim=1)
    args = (torch.full((50,), 2), c, torch.arange(50), ClassTextEncoder(classes), pool, 99, 0)
    assert retrieval_hits(codes, tokens, *args).all()
    # captions of the wrong class lose to the distractors of a class the image shows a little of
    wrong = torch.stack([(c + 1) % classes + 1, torch.ones_like(c)], dim=1)
    hint = codes + 0.5 * nn.functional.one_hot((c + 2) % classes, classes).float()
    assert not retrieval_hits(hint, wrong, *args).any()
