"""Fréchet distance, feature statistics and the reference-statistics cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from attngan.metrics.fid import (
    FeatureStats,
    cached_reference_stats,
    compute_stats,
    frechet_distance,
    stats_cache_key,
    stats_distance,
)


def stats_of(x: np.ndarray) -> FeatureStats:
    s = FeatureStats(x.shape[1])
    s.update(x)
    return s


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Independent reference: the textbook formula with scipy's sqrtm and np.cov."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


@pytest.fixture
def features() -> np.ndarray:
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(16, 16))
    return rng.normal(size=(600, 16)) @ mix + 3.0


def test_fid_of_a_set_with_itself_is_zero(features: np.ndarray) -> None:
    s = stats_of(features)
    assert abs(stats_distance(s, s)) < 1e-6
    assert abs(stats_distance(s, s, method="eigh")) < 1e-6


def test_fid_of_shifted_and_scaled_set_matches_scipy_formula(features: np.ndarray) -> None:
    other = features * 1.7 + np.linspace(-1, 2, features.shape[1])
    expected = scipy_fid(features, other)
    got = stats_distance(stats_of(features), stats_of(other))
    assert expected > 10
    assert got == pytest.approx(expected, rel=1e-8)
    assert stats_distance(stats_of(features), stats_of(other), method="eigh") == pytest.approx(expected, rel=1e-6)


def test_one_dimensional_gaussians_closed_form() -> None:
    # FD(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2
    m1, s1, m2, s2 = 0.5, 2.0, -1.0, 0.5
    fd = frechet_distance(np.array([m1]), np.array([[s1**2]]), np.array([m2]), np.array([[s2**2]]))
    assert fd == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-12)


def test_diagonal_gaussians_closed_form() -> None:
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(3), np.ones(3)
    expected = 3.0 + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    for method in ("sqrtm", "eigh"):
        assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2), method=method) == pytest.approx(expected)


def test_singular_covariances_give_a_finite_value() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(10, 32)) + 0.1  # rank 9 < 32
    sqrtm_value = stats_distance(stats_of(a), stats_of(b))
    eigh_value = stats_distance(stats_of(a), stats_of(b), method="eigh")
    assert np.isfinite(sqrtm_value)
    assert sqrtm_value == pytest.approx(eigh_value, rel=1e-3)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="means differ"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="method"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), method="nope")
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        FeatureStats(4).update(np.zeros((3, 5)))


def test_stats_do_not_depend_on_batching_and_match_numpy(features: np.ndarray) -> None:
    batched = FeatureStats(features.shape[1])
    for chunk in np.array_split(features, 7):
        batched.update(torch.from_numpy(chunk))
    assert batched.num_samples == features.shape[0]
    np.testing.assert_allclose(batched.mean, features.mean(0), rtol=1e-12)
    np.testing.assert_allclose(batched.covariance(), np.cov(features, rowvar=False), rtol=1e-9, atol=1e-10)


def test_stats_keep_precision_with_a_large_mean() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1000, 3)) * 1e-3 + 1e6
    s = FeatureStats(3)
    for chunk in np.array_split(x, 10):
        s.update(chunk)
    # a sum-of-squares formula would be off by ~1e-4 here (1e12 * machine epsilon)
    np.testing.assert_allclose(s.covariance(), np.cov(x, rowvar=False), rtol=1e-6, atol=1e-12)


def test_stats_save_load_round_trip(tmp_path, features: np.ndarray) -> None:
    s = stats_of(features)
    s.meta["note"] = "test"
    path = s.save(tmp_path / "stats.npz")
    loaded = FeatureStats.load(path)
    assert loaded.num_samples == s.num_samples
    assert loaded.meta["note"] == "test"
    np.testing.assert_array_equal(loaded.mean, s.mean)
    np.testing.assert_allclose(loaded.covariance(), s.covariance(), rtol=1e-15)
    assert stats_distance(loaded, s) == pytest.approx(0.0, abs=1e-6)


def test_load_reads_mu_sigma_files_and_names_bad_files(tmp_path) -> None:
    np.savez(tmp_path / "foreign.npz", mu=np.zeros(2), sigma=np.eye(2))
    assert FeatureStats.load(tmp_path / "foreign.npz").dim == 2
    np.savez(tmp_path / "bad.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="bad.npz"):
        FeatureStats.load(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        FeatureStats.load(tmp_path / "missing.npz")


def test_cache_key_changes_with_every_part() -> None:
    base = stats_cache_key({"name": "shapes", "split": "test"}, {"size": 64}, "net sha256:aa")
    assert base == stats_cache_key({"split": "test", "name": "shapes"}, {"size": 64}, "net sha256:aa")
    assert base != stats_cache_key({"name": "shapes", "split": "train"}, {"size": 64}, "net sha256:aa")
    assert base != stats_cache_key({"name": "shapes", "split": "test"}, {"size": 128}, "net sha256:aa")
    assert base != stats_cache_key({"name": "shapes", "split": "test"}, {"size": 64}, "net sha256:bb")


def test_reference_stats_are_computed_once_then_read_from_cache(tmp_path) -> None:
    images = [torch.rand(8, 3, 4, 4) * 2 - 1 for _ in range(3)]
    calls = []

    def compute() -> FeatureStats:
        calls.append(1)
        return compute_stats(lambda x: x.flatten(1)[:, :5], iter(images))

    first = cached_reference_stats(compute, "toy", {"size": 4}, "flatten", tmp_path)
    second = cached_reference_stats(compute, "toy", {"size": 4}, "flatten", tmp_path)
    assert len(calls) == 1 and first.num_samples == 24 == second.num_samples
    np.testing.assert_allclose(second.covariance(), first.covariance())
    cached_reference_stats(compute, "toy", {"size": 8}, "flatten", tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.glob("toy-*.npz"))) == 2


def test_compute_stats_respects_max_samples() -> None:
    batches = (torch.randn(10, 3) for _ in range(5))
    assert compute_stats(lambda x: x, batches, max_samples=25).num_samples == 25
