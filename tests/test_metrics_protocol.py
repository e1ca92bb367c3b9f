"""The papers' protocol: samples spread over every class of a class-sorted split, folds and
Inception-Score splits shuffled with a recorded seed, the papers' sample count."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attngan.data import DataSpec
from attngan.metrics import EvalConfig, inception_score_from_logits, stratified_order
from attngan.metrics.eval_data import EvalSamples
from attngan.metrics.protocol import sample_count_warning, shuffled_parts

# CUB's test split as AttnGAN's test/filenames.pickle lists it: 50 classes, 2,933 images, sorted by class
CUB_TEST_SIZES = [60, 60, 41, 48, 59, 60, 59, 60, 60, 59, 59, 60, 60, 59, 60, 59, 60, 60, 60, 60, 60, 60, 60, 53, 60,
                  60, 60, 60, 60, 50, 60, 60, 60, 60, 59, 60, 60, 59, 60, 60, 60, 60, 60, 59, 60, 60, 60, 60, 50, 60]


def class_sorted_ids() -> np.ndarray:
    return np.repeat(np.arange(len(CUB_TEST_SIZES)), CUB_TEST_SIZES)


def test_every_class_of_a_class_sorted_split_appears_in_1000_samples() -> None:
    classes = class_sorted_ids()
    assert classes.shape == (2933,)
    assert len(set(classes[:1000].tolist())) == 18  # split order: 1,000 samples see 18 of the 50 species
    order = stratified_order(classes, seed=0)
    assert sorted(order.tolist()) == list(range(2933))  # a permutation
    for count in (50 + 49, 1000):
        assert set(classes[order[:count]].tolist()) == set(range(50)), count
    counts = np.bincount(classes[order[:1000]], minlength=50)
    expected = 1000 * np.asarray(CUB_TEST_SIZES) / 2933
    assert np.abs(counts - expected).max() < 2.5  # each species in proportion to its size
    assert np.array_equal(order, stratified_order(classes, seed=0))
    assert not np.array_equal(order, stratified_order(classes, seed=1))


class ClassSortedSplit:
    """A file-backed split's surface as EvalSamples reads it: records with class ids, items, captions."""

    def __init__(self) -> None:
        from attngan.text import PAD_TOKEN, Vocabulary

        self.records = [SimpleNamespace(class_id=int(c)) for c in class_sorted_ids()]
        self.vocab = Vocabulary([PAD_TOKEN, "a", "bird"])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        return {"tokens": torch.tensor([1, 2]), "length": 2, "caption_index": i % 10, "class_id": self.records[i].class_id,
                "key": f"img{i}", "images": [torch.zeros(3, 4, 4)]}

    def caption_text(self, i: int, caption_index: int) -> str:
        return "a bird"


def test_evaluation_samples_cover_every_class_at_1000() -> None:
    samples = EvalSamples(ClassSortedSplit(), num_samples=1000, max_words=18, order_seed=0)
    images = [samples.image_index(k) for k in range(1000)]
    assert len(set(images)) == 1000  # distinct images on the first pass
    assert {samples.dataset.records[i].class_id for i in images} == set(range(50))
    batch = samples.batch(range(0, 1000, 100))
    assert batch["class_ids"].tolist() == [samples.dataset.records[i].class_id for i in images[::100]]


def test_inception_score_splits_are_those_of_the_recorded_seed() -> None:
    logits = torch.randn(97, 6, generator=torch.Generator().manual_seed(0)) * 3
    p = torch.softmax(logits.double(), 1).numpy()
    scores = []
    for part in np.array_split(np.random.default_rng([5, 3]).permutation(97), 10):
        q = p[part]
        scores.append(np.exp(np.mean(np.sum(q * (np.log(q) - np.log(q.mean(0, keepdims=True))), 1))))
    mean, std = inception_score_from_logits(logits, 10, seed=[5, 3])
    assert mean == pytest.approx(np.mean(scores), rel=1e-9) and std == pytest.approx(np.std(scores), rel=1e-7)
    contiguous = inception_score_from_logits(logits, 10)
    assert contiguous != (mean, std)  # the cut matters: without the seed, parts follow the sample order
    assert [len(x) for x in shuffled_parts(97, 10, [5, 3])] == [10] * 7 + [9] * 3


def test_the_papers_sample_count_is_the_default_on_cub_and_coco(tmp_path: Path) -> None:
    assert EvalConfig(data=DataSpec("cub", str(tmp_path))).sample_count == 30_000
    assert EvalConfig(data=DataSpec("coco", str(tmp_path))).sample_count == 30_000
    assert EvalConfig(data=DataSpec("shapes")).sample_count == 1000
    assert EvalConfig(data=DataSpec("cub", str(tmp_path)), num_samples=500).sample_count == 500
    warning = sample_count_warning("cub", 1000)
    assert warning is not None and "30,000" in warning and "not comparable" in warning
    assert sample_count_warning("cub", 30_000) is None and sample_count_warning("shapes", 10) is None
