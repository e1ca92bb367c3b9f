"""Evaluation metrics: FID / IS (local Inception weights only), R-precision, attribute accuracy
(per object for shapes scenes), in-domain Fréchet distances, diversity for a fixed caption,
and a registry that logs results as JSONL.

:func:`run_evaluation` (``attngan evaluate``) generates from a data set's held-out captions
and scores every metric in one pass; :func:`evaluate_shapes` is its shapes shortcut.

Nothing here downloads weights: the Inception networks are built from files the user names
(``inception_weights`` / ``--inception-weights`` for ``pt_inception-2015-12-05-6726825d.pth``,
``torchvision_inception_weights`` / ``--torchvision-inception-weights`` for torchvision's
``inception_v3_google-*.pth``).
"""

from . import builtin as _builtin  # noqa: F401  (registers the built-in metrics)
from .classifier import (
    AttributeClassifier,
    ClassifierConfig,
    attribute_accuracy,
    attribute_hits,
    load_classifier,
    save_classifier,
    summarise_attribute_hits,
    train_attribute_classifier,
)
from .diversity import diversity_ratio, mean_pairwise_distance, shapes_diversity
from .eval_data import DataSpec, EvalSamples, data_classifier, train_data_classifier
from .evaluate import evaluate_model, generated_from_pipeline
from .fid import (
    FeatureStats,
    cached_reference_stats,
    compute_stats,
    default_cache_dir,
    frechet_distance,
    stats_cache_key,
    stats_distance,
)
from .in_domain import ClassifierFeatures, DAMSMImageFeatures, module_fingerprint
from .inception import (
    TF_INCEPTION_WEIGHTS_FILE,
    TORCHVISION_INCEPTION_WEIGHTS_FILE,
    MissingWeightsError,
    TFInceptionFeatures,
    TorchvisionInceptionFeatures,
    load_inception,
)
from .inception_score import inception_score, inception_score_from_logits
from .r_precision import (
    CaptionPool,
    compute_r_precision,
    fold_summary,
    r_precision_from_features,
    r_precision_hits,
)
from .registry import (
    DEFAULT_REGISTRY,
    MetricContext,
    MetricRegistry,
    append_jsonl,
    compute,
    evaluate,
    library_versions,
    register_metric,
)
from .run import EvalConfig, EvalResult, evaluate_shapes, resolve_metrics, run_evaluation
from .scenes import SceneHits, scene_hits, scene_table, summarise_scene_hits

__all__ = [
    "DEFAULT_REGISTRY", "TF_INCEPTION_WEIGHTS_FILE", "TORCHVISION_INCEPTION_WEIGHTS_FILE", "AttributeClassifier",
    "CaptionPool", "ClassifierConfig", "ClassifierFeatures", "DAMSMImageFeatures", "FeatureStats", "MetricContext",
    "MetricRegistry", "MissingWeightsError", "TFInceptionFeatures", "TorchvisionInceptionFeatures", "append_jsonl",
    "attribute_accuracy", "attribute_hits", "cached_reference_stats", "compute", "compute_r_precision",
    "compute_stats", "default_cache_dir", "evaluate", "evaluate_model", "generated_from_pipeline", "fold_summary", "frechet_distance", "inception_score",
    "inception_score_from_logits", "library_versions", "load_classifier", "load_inception", "module_fingerprint",
    "r_precision_from_features", "r_precision_hits", "register_metric", "save_classifier", "stats_cache_key",
    "stats_distance", "summarise_attribute_hits", "train_attribute_classifier",
    "DataSpec", "EvalConfig", "EvalResult", "EvalSamples", "data_classifier", "evaluate_shapes", "resolve_metrics",
    "run_evaluation", "train_data_classifier",
    "SceneHits", "diversity_ratio", "mean_pairwise_distance", "scene_hits", "scene_table", "shapes_diversity",
    "summarise_scene_hits",
]
