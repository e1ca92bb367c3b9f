"""The periodic evaluation of a GAN run: every ``run.eval_every`` steps the main process scores
the EMA generator through the evaluation engine (:func:`attngan.metrics.run_evaluation`, the
code ``attngan evaluate`` runs), in the run's precision, and appends the records, each with
its ``step``, to ``<run>/evaluations.jsonl``."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..data.spec import DataSpec
from ..metrics import EvalConfig, append_jsonl, get_metric, metric_names, run_evaluation
from ..metrics.eval_data import CLASSIFIER_RECIPES, data_classifier, describe_classifier
from .options import EvalOptions

log = logging.getLogger(__name__)

EVALUATIONS_FILE = "evaluations.jsonl"


def _classifier(spec: DataSpec, options: EvalOptions, device: torch.device) -> tuple[Any, dict[str, Any] | None]:
    """The attribute classifier the chosen metrics need (``eval.classifier`` or the cached one),
    or ``(None, None)``; a missing one is an error only when a metric that needs it was named."""
    needing = [m for m in metric_names() if "classifier" in get_metric(m).needs]
    wanted = [m for m in options.metrics if m in needing] if options.metrics else needing
    if not wanted or spec.kind not in CLASSIFIER_RECIPES:
        return None, None
    try:
        classifier, folder = data_classifier(spec, options.classifier, device=device)
    except FileNotFoundError:
        if options.metrics:
            raise
        return None, None
    return classifier, describe_classifier(classifier, folder)


def evaluate_run(bundle: Any, data: DataSpec, options: EvalOptions, device: torch.device, precision: str,
                 out_dir: Path, step: int) -> list[dict[str, Any]]:
    """Score ``bundle`` (the run's EMA generator and encoders) on ``options.split`` of ``data``
    (its ``extra`` replaced by ``options.data_extra``); returns the records, also appended to
    ``out_dir / evaluations.jsonl`` with ``step``."""
    from ..inference.pipeline import AttnGANPipeline

    spec = replace(data, split=options.split, extra=dict(options.data_extra))
    pipeline = AttnGANPipeline(bundle, device=device, precision=precision)
    classifier, info = _classifier(spec, options, device)
    cfg = EvalConfig(data=spec, metrics=options.metrics or None, num_samples=options.num_samples,
                     batch_size=options.batch_size, seed=options.seed, inception_weights=options.inception_weights,
                     clip_weights=options.clip_weights, clip_model=options.clip_model, preview=0)
    result = run_evaluation(pipeline, cfg, classifier, classifier_info=info)
    assert result is not None  # one process
    for record in result.records:
        append_jsonl(out_dir / EVALUATIONS_FILE, {**record, "step": step})
    shown = {k: round(v, 4) for k, v in result.summary.items() if isinstance(v, float) and not k.startswith("real_")}
    log.info("evaluation at step %d: %s", step, shown)
    for note in result.notes:
        log.info("evaluation: %s", note)
    return result.records
