"""Evaluation metrics, computed as the papers compute them, through one engine.

:func:`run_evaluation` (``attngan evaluate``, the periodic evaluation of a GAN run, the tests)
generates from a data set's held-out captions through the pipeline and hands every batch to
the chosen metrics; each metric is one registered :class:`Metric` (:mod:`.engine`; the
built-in ones in :mod:`.builtin`): R-precision, per-object / per-attribute accuracy, in-domain
Fréchet distances, diversity, FID / IS and the "PyTorch FID" of DM-GAN / DF-GAN. Records go to
JSONL (:mod:`.records`); :mod:`.report` draws a report folder. :func:`evaluate_shapes` is the
shapes shortcut.

Nothing here downloads weights: the Inception networks are built from files the user names
(``--inception-weights`` for ``pt_inception-2015-12-05-6726825d.pth``,
``--torchvision-inception-weights`` for torchvision's ``inception_v3_google-*.pth``,
``--birds-inception-weights`` for a birds-fine-tuned Inception-v3).
"""

from . import builtin as _builtin  # noqa: F401  (registers the built-in metrics)
from .classifier import (
    AttributeClassifier,
    ClassifierConfig,
    attribute_accuracy,
    attribute_hits,
    load_classifier,
    predict_attributes,
    save_classifier,
    summarise_attribute_hits,
    train_attribute_classifier,
)
from .classifier_choice import ClassifierChoice, choose_classifier
from .diversity import diversity_ratio, mean_pairwise_distance, shapes_diversity
from .engine import (
    Capabilities,
    EvalConfig,
    EvalContext,
    Metric,
    SampleBatch,
    get_metric,
    metric_names,
    register_metric,
    resolve_metrics,
    unregister_metric,
)
from .eval_data import EvalSamples, data_classifier, train_data_classifier
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
    BirdsInceptionFeatures,
    MissingWeightsError,
    TFInceptionFeatures,
    TorchvisionInceptionFeatures,
    load_inception,
    pytorch_fid_input,
)
from .inception_score import inception_score, inception_score_from_logits
from .protocol import PROTOCOL_SAMPLES, shuffled_folds, stratified_order
from .r_precision import CaptionPool, r_precision_from_features
from .records import append_jsonl, library_versions, make_record
from .run import EvalResult, evaluate_shapes, run_evaluation
from .scenes import SceneHits, scene_hits, scene_table, summarise_scene_hits

__all__ = [
    "PROTOCOL_SAMPLES", "TF_INCEPTION_WEIGHTS_FILE", "TORCHVISION_INCEPTION_WEIGHTS_FILE", "AttributeClassifier",
    "BirdsInceptionFeatures", "Capabilities", "ClassifierChoice", "choose_classifier", "CaptionPool", "ClassifierConfig", "ClassifierFeatures",
    "DAMSMImageFeatures", "EvalConfig", "EvalContext", "EvalResult", "EvalSamples", "FeatureStats", "Metric",
    "MissingWeightsError", "SampleBatch", "SceneHits", "TFInceptionFeatures", "TorchvisionInceptionFeatures",
    "append_jsonl", "attribute_accuracy", "attribute_hits", "cached_reference_stats", "compute_stats",
    "data_classifier", "default_cache_dir", "diversity_ratio", "evaluate_shapes", "frechet_distance", "get_metric",
    "inception_score", "inception_score_from_logits", "library_versions", "load_classifier", "load_inception",
    "make_record", "mean_pairwise_distance", "metric_names", "module_fingerprint", "predict_attributes",
    "pytorch_fid_input", "r_precision_from_features", "register_metric", "resolve_metrics", "run_evaluation",
    "save_classifier", "scene_hits", "scene_table", "shapes_diversity", "shuffled_folds", "stats_cache_key",
    "stats_distance", "stratified_order", "summarise_attribute_hits", "summarise_scene_hits",
    "train_attribute_classifier", "train_data_classifier", "unregister_metric",
]
