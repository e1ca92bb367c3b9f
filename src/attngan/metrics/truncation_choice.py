"""Choosing a model's default truncation on held-out captions (``attngan tune-truncation``).

Smaller truncation draws more typical noise: the images follow the caption more often and vary
less. The choice is made by a rule fixed before the figures are seen: of the values tried, the
one that gets the most captions entirely right (the attribute classifier's ``accuracy_all``:
shapes' every object and background, tags' every tag) while the diversity ratio (one caption's
images' spread as a share of its real renderings', :mod:`attngan.metrics.diversity`) stays at
least ``min_diversity``; ties go to the larger value (more varied images). Tune on the
validation split: the test split's figures are then honest.

With several numbers of candidates (best of K, :mod:`attngan.inference.candidates`) each K gets its
best truncation by that rule, and the K chosen is the smallest whose accuracy is within
``margin`` of the best K's: a candidate costs a generation and an image encoding, so more of them
must buy more than the noise of the measurement.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..errors import SettingError
from ..inference.noise import check_truncation
from .run import EvalConfig, EvalResult, run_evaluation

if TYPE_CHECKING:
    from ..inference.pipeline import AttnGANPipeline
    from .classifier import AttributeClassifier

ACCURACY_METRICS = ("scene_accuracy", "attribute_accuracy")  # shapes, tags: both report accuracy_all
DEFAULT_VALUES = (1.0, 0.8, 0.7, 0.6, 0.5, 0.4)
DEFAULT_MIN_DIVERSITY = 0.6


@dataclass(frozen=True)
class TruncationTrial:
    """The figures of one truncation value on the held-out captions."""

    truncation: float
    accuracy: float  # share of captions with every attribute right (accuracy_all)
    diversity: float  # diversity ratio (generated spread / real spread)
    candidates: int = 1  # best of K


def choose_truncation(trials: Sequence[TruncationTrial], min_diversity: float) -> TruncationTrial | None:
    """The most accurate trial whose diversity is at least ``min_diversity`` (ties: the larger
    truncation); None when no trial keeps that diversity."""
    kept = [t for t in trials if t.diversity >= min_diversity and not math.isnan(t.accuracy)]
    if not kept:
        return None
    return max(kept, key=lambda t: (t.accuracy, t.truncation))


def choose_sampling(trials: Sequence[TruncationTrial], min_diversity: float, margin: float
                    ) -> TruncationTrial | None:
    """Per number of candidates the trial :func:`choose_truncation` keeps; of those, the one with the
    fewest candidates whose accuracy is at least the best one's minus ``margin``. None when no
    trial keeps the diversity."""
    best_per_k = [choose_truncation([t for t in trials if t.candidates == k], min_diversity)
                  for k in sorted({t.candidates for t in trials})]
    kept = [t for t in best_per_k if t is not None]
    if not kept:
        return None
    top = max(t.accuracy for t in kept)
    return min((t for t in kept if t.accuracy >= top - margin), key=lambda t: t.candidates)


def _figure(result: EvalResult, metric: str, key: str) -> float:
    if key not in result.summary:
        raise SettingError("metrics", f"the evaluation returned no {metric} figure ({key}): "
                                      f"{'; '.join(result.notes) or 'no reason given'}")
    return float(result.summary[key])


def sweep_truncation(pipeline: AttnGANPipeline, cfg: EvalConfig, classifier: AttributeClassifier,
                     values: Sequence[float], accuracy_metric: str,
                     on_trial: Callable[[TruncationTrial, EvalResult], None] | None = None,
                     ) -> list[tuple[TruncationTrial, EvalResult]]:
    """Evaluate ``pipeline`` at each truncation of ``values`` with ``accuracy_metric`` (one of
    :data:`ACCURACY_METRICS`) and diversity, on ``cfg``'s captions and seeds (the same for every
    value); ``on_trial`` is called after each. The pipeline's own truncation is left as it was."""
    if accuracy_metric not in ACCURACY_METRICS:
        raise SettingError("metrics", f"{accuracy_metric} has no accuracy_all; use one of {', '.join(ACCURACY_METRICS)}")
    values = [check_truncation(v) for v in values]
    if not values:
        raise SettingError("values", "name at least one truncation to try")
    cfg = replace(cfg, metrics=[accuracy_metric, "diversity"])
    before = pipeline.truncation
    out = []
    try:
        for value in values:
            pipeline.truncation = value
            result = run_evaluation(pipeline, cfg, classifier)
            assert result is not None  # one process
            trial = TruncationTrial(value, _figure(result, accuracy_metric, "accuracy_all"),
                                    _figure(result, "diversity", "diversity_ratio"), pipeline.candidates)
            out.append((trial, result))
            if on_trial is not None:
                on_trial(trial, result)
    finally:
        pipeline.truncation = before
    return out
