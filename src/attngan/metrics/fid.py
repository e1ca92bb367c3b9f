"""Fréchet distance between Gaussian feature statistics, and cached reference statistics.

``FeatureStats`` accumulates the mean and covariance of features ``[N, F]`` in float64
with a batch-wise merge of centred moments (Chan et al.), so the result does not depend on
how the samples are batched and keeps precision when the mean is large compared with the
spread. Statistics are stored as ``.npz`` files with ``mu`` / ``sigma`` arrays (the layout
pytorch-fid and TTUR use) plus ``num_samples`` and a JSON ``meta`` string; they are always
read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache import cache_dir
from ..files import atomic_file

logger = logging.getLogger(__name__)

STATS_FORMAT = "attngan-feature-stats"


class FeatureStats:
    """Running mean and covariance of feature vectors, in float64.

    Feed batches ``[N, F]`` with :meth:`update`; read ``mean [F]`` and
    :meth:`covariance` ``[F, F]`` (unbiased, divided by ``n - 1`` as ``np.cov``).
    """

    def __init__(self, dim: int, meta: dict[str, Any] | None = None) -> None:
        if dim < 1:
            raise ValueError(f"feature dimension must be >= 1, got {dim}")
        self.dim = dim
        self.num_samples = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self._scatter = np.zeros((dim, dim), dtype=np.float64)  # sum of centred outer products
        self.meta: dict[str, Any] = dict(meta or {})

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        """Add a batch of features ``[N, F]`` (any float dtype; converted to float64)."""
        x = features.detach().to("cpu", torch.float64).numpy() if isinstance(features, torch.Tensor) else features
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must be [N, {self.dim}], got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            return
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or infinity")
        n_b = x.shape[0]
        mean_b = x.mean(axis=0)
        centred = x - mean_b
        scatter_b = centred.T @ centred
        n_a = self.num_samples
        total = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / total)
        self._scatter += scatter_b + np.outer(delta, delta) * (n_a * n_b / total)
        self.num_samples = total

    def covariance(self) -> np.ndarray:
        """``[F, F]`` unbiased covariance; needs at least two samples."""
        if self.num_samples < 2:
            raise ValueError(f"covariance needs at least 2 samples, have {self.num_samples}")
        return self._scatter / (self.num_samples - 1)

    @classmethod
    def from_moments(cls, mu: np.ndarray, sigma: np.ndarray, num_samples: int,
                     meta: dict[str, Any] | None = None) -> FeatureStats:
        """Statistics from a mean ``[F]``, covariance ``[F, F]`` and sample count (>= 2)."""
        mu = np.asarray(mu, dtype=np.float64)
        sigma = np.asarray(sigma, dtype=np.float64)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"mu must be [F] and sigma [F, F], got {mu.shape} and {sigma.shape}")
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        stats = cls(mu.shape[0], meta)
        stats.mean = mu.copy()
        stats._scatter = sigma * (num_samples - 1)
        stats.num_samples = int(num_samples)
        return stats

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``mu``, ``sigma``, ``num_samples`` and ``meta`` to ``path`` (``.npz``) atomically."""
        path = Path(path)
        with atomic_file(path) as f:
            np.savez(f, mu=self.mean, sigma=self.covariance(), num_samples=np.int64(self.num_samples),
                     meta=np.array(json.dumps({"format": STATS_FORMAT, **self.meta}, sort_keys=True, default=str)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureStats:
        """Read statistics written by :meth:`save`, or a pytorch-fid/TTUR ``mu``/``sigma`` file.

        A file without ``num_samples`` (foreign files) gets a count of 2; the count only
        matters for merging further batches, not for distances.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in ("mu", "sigma") if k not in data]
                if missing:
                    raise ValueError(f"{path} lacks {', '.join(missing)}: not a feature-statistics file")
                mu, sigma = data["mu"], data["sigma"]
                num = int(data["num_samples"]) if "num_samples" in data else 2
                meta = json.loads(str(data["meta"])) if "meta" in data else {}
        except FileNotFoundError:
            raise FileNotFoundError(f"feature statistics file not found: {path}") from None
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a readable feature-statistics .npz ({exc})") from None
        meta.pop("format", None)
        return cls.from_moments(mu, sigma, num, meta)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6, method: str = "sqrtm") -> float:
    """Fréchet distance ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians.

    Args:
        mu1, mu2: ``[F]`` means.
        sigma1, sigma2: ``[F, F]`` covariances.
        eps: diagonal offset added to both covariances when the product's square root is
            not finite (near-singular covariances), as the standard implementations do.
        method: ``"sqrtm"`` (scipy's Schur square root of ``S1 S2``, the standard FID
            computation; a small imaginary part from rounding is dropped, a large one is an
            error) or ``"eigh"`` (``Tr sqrt(A S2 A)`` with ``A = S1^(1/2)``, from symmetric
            eigen-decompositions; exact for positive semi-definite inputs).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"means differ in shape: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances must both be [{mu1.shape[0]}, {mu1.shape[0]}], got {sigma1.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    if method == "sqrtm":
        tr_covmean = _trace_sqrt_product_sqrtm(sigma1, sigma2, eps)
    elif method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(sigma1, sigma2)
    else:
        raise ValueError(f"method must be 'sqrtm' or 'eigh', got {method!r}")
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def _trace_sqrt_product_sqrtm(sigma1: np.ndarray, sigma2: np.ndarray, eps: float) -> float:
    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns on singular products; handled below
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            logger.warning("Fréchet distance: singular covariance product; adding %g to the diagonals", eps)
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: square root has a large imaginary part "
                             f"({np.max(np.abs(covmean.imag)):.3g}); are the covariances valid?")
        covmean = covmean.real
    return float(np.trace(covmean))


def _trace_sqrt_product_eigh(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    values, vectors = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def stats_distance(a: FeatureStats, b: FeatureStats, method: str = "sqrtm") -> float:
    """:func:`frechet_distance` between two :class:`FeatureStats`."""
    return frechet_distance(a.mean, a.covariance(), b.mean, b.covariance(), method=method)


def stats_cache_key(dataset: str | dict[str, Any], settings: dict[str, Any], extractor_identity: str) -> str:
    """16-hex key for a real set's statistics: data set description + settings + feature extractor.

    Any change to the description, a setting (resolution, split, sample count, ...) or the
    extractor (network, layer, weights hash) gives a different key.
    """
    payload = json.dumps({"dataset": dataset, "settings": settings, "extractor": extractor_identity},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """Where real-image statistics are cached: ``fid_stats`` under :func:`attngan.cache.cache_root`."""
    return cache_dir("fid_stats")


def compute_stats(extract: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[torch.Tensor],
                  meta: dict[str, Any] | None = None, max_samples: int | None = None) -> FeatureStats:
    """Statistics of ``extract(images)`` over image batches ``[B, 3, H, W]``.

    ``extract`` maps a batch to features ``[B, F]``; at most ``max_samples`` images are used.
    """
    stats: FeatureStats | None = None
    for images in batches:
        if max_samples is not None and stats is not None and stats.num_samples >= max_samples:
            break
        if max_samples is not None and stats is not None:
            images = images[: max_samples - stats.num_samples]
        with torch.no_grad():
            feats = extract(images)
        if stats is None:
            stats = FeatureStats(feats.shape[1], meta)
        stats.update(feats)
    if stats is None or stats.num_samples < 2:
        raise ValueError("need at least 2 images to compute feature statistics")
    return stats


def cached_reference_stats(
    compute: Callable[[], FeatureStats],
    dataset: str | dict[str, Any],
    settings: dict[str, Any],
    extractor_identity: str,
    cache_dir: str | os.PathLike[str] | None,
) -> FeatureStats:
    """Load a real set's statistics from ``cache_dir`` by :func:`stats_cache_key`, or compute and store them.

    ``cache_dir=None`` disables caching (always computes).
    """
    if cache_dir is None:
        return compute()
    key = stats_cache_key(dataset, settings, extractor_identity)
    name = dataset if isinstance(dataset, str) else str(dataset.get("name", "dataset"))
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:48] or "dataset"
    path = Path(cache_dir) / f"{slug}-{key}.npz"
    if path.exists():
        logger.info("reference statistics from cache %s", path)
        return FeatureStats.load(path)
    stats = compute()
    stats.meta.update({"dataset": dataset, "settings": settings, "extractor": extractor_identity, "key": key})
    stats.save(path)
    logger.info("reference statistics of %d samples cached at %s", stats.num_samples, path)
    return stats
