"""Which attribute classifier an evaluation uses: the one home of that choice, for
``attngan evaluate``, the periodic evaluation of a GAN run and :func:`~attngan.metrics.evaluate_shapes`.

The metrics that need the classifier (``scene_accuracy``, ``attribute_accuracy``,
``fd_classifier``, ``diversity``) get, in this order: the folder the caller names, or the
cached classifier of the data settings (:func:`~attngan.metrics.eval_data.classifier_cache_dir`),
trained once on real train images and cached when it is missing (``train_missing``), or
trained anew when ``retrain`` is asked for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.spec import DataSpec
from ..errors import SettingError
from .classifier import AttributeClassifier
from .engine import Capabilities, get_metric, metric_names
from .eval_data import CLASSIFIER_RECIPES, classifier_cache_dir, data_classifier, describe_classifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierChoice:
    """The classifier of an evaluation (None when no chosen metric needs one, or when the
    metrics that would use it are left out) and what the records say about it."""

    classifier: AttributeClassifier | None = None
    info: dict[str, Any] | None = None
    folder: Path | None = None
    trained: bool = False


def metrics_needing_classifier(metrics: Sequence[str] | None, kind: str, caps: Capabilities | None = None
                               ) -> list[str]:
    """The chosen metrics that need the classifier: those named in ``metrics``, or (``None``:
    automatic mode) those the data kind and ``caps`` allow."""
    needing = [m for m in metric_names() if "classifier" in get_metric(m).needs]
    if metrics is not None:
        return [m for m in metrics if m in needing]
    if kind not in CLASSIFIER_RECIPES:
        return []
    if caps is None:
        return needing
    return [m for m in needing if get_metric(m).applies(caps) and get_metric(m).problem(caps) is None]


def choose_classifier(spec: DataSpec, metrics: Sequence[str] | None, *, caps: Capabilities | None = None,
                      path: str | os.PathLike[str] | None = None, retrain: bool = False, train_missing: bool = True,
                      device: str | torch.device = "cpu", rank: int = 0, world_size: int = 1,
                      on_train: Callable[[Path], None] | None = None) -> ClassifierChoice:
    """The attribute classifier for ``metrics`` on ``spec``'s data (see the module doc).

    ``path``: the classifier's folder (default: the cache folder of the data settings).
    ``retrain``: train it anew on real train images and save it there. ``train_missing``: train
    and save it when that folder holds none; otherwise a missing classifier is an error when a
    metric that needs it was named, and leaves those metrics out in automatic mode.
    ``on_train(folder)`` is called (rank 0) before training starts, which takes minutes.
    Under ``torchrun`` (``world_size`` > 1) rank 0 trains while the others wait, then load it.
    """
    wanted = metrics_needing_classifier(metrics, spec.kind, caps)
    if not wanted:
        if retrain or path is not None:
            raise SettingError("train_classifier" if retrain else "classifier",
                               "no metric that needs the attribute classifier is computed for "
                               f"{{data.kind}} {spec.kind} with these {{metrics}}")
        return ClassifierChoice()
    if spec.kind not in CLASSIFIER_RECIPES:
        raise SettingError("metrics", f"{wanted[0]} needs attributes, which {{data.kind}} {spec.kind} lacks "
                                      "(use shapes or tags)")
    folder = Path(path) if path is not None else classifier_cache_dir(spec)
    present = (folder / "config.json").exists()
    train = retrain or (not present and train_missing and path is None)
    if world_size > 1:  # every rank follows rank 0's view of the folder
        import torch.distributed as dist

        box = [train]
        dist.broadcast_object_list(box, src=0)
        train = bool(box[0])
    classifier: AttributeClassifier | None = None
    if train:
        if rank == 0:
            if on_train is not None:
                on_train(folder)
            classifier, folder = data_classifier(spec, folder, train=True, device=device)
        if world_size > 1:
            import torch.distributed as dist

            dist.barrier()
    elif not present and metrics is None and path is None:
        logger.info("%s left out: no attribute classifier at %s", ", ".join(wanted), folder)
        return ClassifierChoice()
    if classifier is None:
        classifier, folder = data_classifier(spec, folder, device=device)
    return ClassifierChoice(classifier, describe_classifier(classifier, folder), folder, train)
