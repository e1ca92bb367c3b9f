"""The periodic evaluation of a GAN run: every ``run.eval_every`` steps the main process scores
the EMA generator through the evaluation engine (:func:`attngan.metrics.run_evaluation`, the
code ``attngan evaluate`` runs), in the run's precision, and appends the records, each with
its ``step``, to ``<run>/evaluations.jsonl``."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch

from ..data.spec import DataSpec
from ..hub import ModelBundle
from ..metrics import EvalConfig, append_jsonl, run_evaluation
from ..metrics.classifier_choice import choose_classifier
from ..metrics.records import MetricRecord
from .options import EvalOptions

log = logging.getLogger(__name__)

EVALUATIONS_FILE = "evaluations.jsonl"


def evaluate_run(bundle: ModelBundle, data: DataSpec, options: EvalOptions, device: torch.device, precision: str,
                 out_dir: Path, step: int) -> list[MetricRecord]:
    """Score ``bundle`` (the run's EMA generator and encoders) on ``options.split`` of ``data``
    (its ``extra`` replaced by ``options.data_extra``); returns the records, also appended to
    ``out_dir / evaluations.jsonl`` with ``step``."""
    from ..inference.pipeline import AttnGANPipeline

    spec = replace(data, split=options.split, extra=dict(options.data_extra))
    pipeline = AttnGANPipeline(bundle, device=device, precision=precision)
    # a missing classifier is trained by `attngan evaluate`, not in the middle of a run: its metrics are
    # left out here, or an error when named
    choice = choose_classifier(spec, options.metrics or None, path=options.classifier, train_missing=False,
                               device=device)
    cfg = EvalConfig(**{**options.settings(), "metrics": options.metrics or None}, data=spec, preview=0)
    result = run_evaluation(pipeline, cfg, choice.classifier, classifier_info=choice.info)
    assert result is not None  # one process
    for record in result.records:
        append_jsonl(out_dir / EVALUATIONS_FILE, {**record, "step": step})
    shown = {k: round(v, 4) for k, v in result.summary.items() if isinstance(v, float) and not k.startswith("real_")}
    log.info("evaluation at step %d: %s", step, shown)
    for note in result.notes:
        log.info("evaluation: %s", note)
    return result.records
