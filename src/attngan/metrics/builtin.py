"""The built-in metrics, registered in ``DEFAULT_REGISTRY``.

=================  ==========================================================================
``fid``            FID, TF Inception-v3 2015-12-05 (``inception_weights``), via torch-fidelity
``is``             Inception Score, same network (``is_splits``, default 10)
``fid_torchvision`` "PyTorch FID": torchvision ImageNet Inception-v3 (``torchvision_inception_weights``)
``is_torchvision`` Inception Score with torchvision's ImageNet Inception-v3
``r_precision``    AttnGAN R-precision with the DAMSM encoders (``r_distractors`` 99, ``r_folds`` 10)
``attribute_accuracy`` per-attribute and all-attributes accuracy of the attribute classifier
``scene_accuracy`` per-object accuracy of shapes scenes (slot scene classifier; batches carry
                   ``scenes`` and ``names_background``, as ``EvalSamples.batch`` gives them)
``fd_damsm``       in-domain Fréchet distance on DAMSM image-encoder global codes
``fd_classifier``  in-domain Fréchet distance on attribute-classifier features
=================  ==========================================================================
"""

from __future__ import annotations

from typing import Any

import torch

from .classifier import attribute_hits, summarise_attribute_hits
from .fid import stats_distance
from .in_domain import ClassifierFeatures, DAMSMImageFeatures
from .inception import load_inception
from .inception_score import inception_score_from_logits
from .r_precision import compute_r_precision
from .registry import DEFAULT_REGISTRY, MetricContext, final_images
from .scenes import SceneHits, scene_accuracy_result, scene_hits

register = DEFAULT_REGISTRY.register_metric


def _inception(ctx: MetricContext, kind: str) -> Any:
    weights = ctx.inception_weights if kind == "tf" else ctx.torchvision_inception_weights
    return ctx.memo(f"inception:{kind}", lambda: load_inception(kind, weights, ctx.device))


def _frechet(ctx: MetricContext, extractor: Any, metric: str, key: str) -> dict[str, Any]:
    generated, _ = ctx.generated_features(extractor, metric)
    reference = ctx.reference_stats(extractor, metric)
    return {
        "values": {key: stats_distance(generated, reference)},
        "label": extractor.fid_label,
        "feature_extractor": extractor.identity,
        "num_samples": generated.num_samples,
        "num_reference": reference.num_samples,
    }


def _inception_score(ctx: MetricContext, extractor: Any, metric: str) -> dict[str, Any]:
    stats, logits = ctx.generated_features(extractor, metric, with_logits=True)
    splits = int(ctx.options.get("is_splits", 10))
    mean, std = inception_score_from_logits(logits, splits)
    return {"values": {"is": mean, "is_std": std}, "label": extractor.is_label,
            "feature_extractor": extractor.identity, "num_samples": stats.num_samples, "splits": splits}


@register("fid")
def fid(ctx: MetricContext) -> dict[str, Any]:
    return _frechet(ctx, _inception(ctx, "tf"), "fid", "fid")


@register("is")
def inception_score(ctx: MetricContext) -> dict[str, Any]:
    return _inception_score(ctx, _inception(ctx, "tf"), "is")


@register("fid_torchvision")
def fid_torchvision(ctx: MetricContext) -> dict[str, Any]:
    return _frechet(ctx, _inception(ctx, "torchvision"), "fid_torchvision", "fid_torchvision")


@register("is_torchvision")
def inception_score_torchvision(ctx: MetricContext) -> dict[str, Any]:
    return _inception_score(ctx, _inception(ctx, "torchvision"), "is_torchvision")


@register("r_precision")
def r_precision(ctx: MetricContext) -> dict[str, Any]:
    image_encoder = ctx.require("image_encoder", "r_precision")
    text_encoder = ctx.require("text_encoder", "r_precision")
    captions = ctx.require("captions", "r_precision")
    batches = ({**b, "images": final_images(b)} for b in ctx.generated_batches("r_precision"))
    result = compute_r_precision(image_encoder, text_encoder, batches, captions,
                                 num_distractors=int(ctx.options.get("r_distractors", 99)),
                                 num_folds=int(ctx.options.get("r_folds", 10)), seed=ctx.seed)
    return {
        "values": {"r_precision": result["r_precision"], "r_precision_std": result["r_precision_std"]},
        "label": "R-precision (DAMSM encoders, top-1 of true caption + mismatched captions)",
        "feature_extractor": DAMSMImageFeatures(image_encoder).identity,
        "num_samples": result["num_samples"],
        "num_distractors": result["num_distractors"],
        "num_folds": result["num_folds"],
    }


@register("attribute_accuracy")
def attribute_accuracy(ctx: MetricContext) -> dict[str, Any]:
    classifier = ctx.require("classifier", "attribute_accuracy")
    hits = []
    for batch in ctx.generated_batches("attribute_accuracy"):
        if "attributes" not in batch:
            raise ValueError("metric 'attribute_accuracy' needs 'attributes' [B, K] in the generated batches")
        hits.append(attribute_hits(classifier, final_images(batch), torch.as_tensor(batch["attributes"])))
    if not hits:
        raise ValueError("metric 'attribute_accuracy' got no generated images")
    all_hits = torch.cat(hits)
    return {
        "values": summarise_attribute_hits(all_hits, classifier.config.attribute_names),
        "label": "attribute accuracy (attribute classifier trained on real images)",
        "feature_extractor": ClassifierFeatures(classifier).identity,
        "num_samples": int(all_hits.shape[0]),
    }


@register("scene_accuracy")
def scene_accuracy(ctx: MetricContext) -> dict[str, Any]:
    classifier = ctx.require("classifier", "scene_accuracy")
    hits = []
    for batch in ctx.generated_batches("scene_accuracy"):
        if "scenes" not in batch or "names_background" not in batch:
            raise ValueError("metric 'scene_accuracy' needs 'scenes' and 'names_background' in the generated batches")
        hits.append(scene_hits(classifier, final_images(batch), batch["scenes"], batch["names_background"]))
    if not hits:
        raise ValueError("metric 'scene_accuracy' got no generated images")
    return scene_accuracy_result(classifier, SceneHits.cat(hits))


@register("fd_damsm")
def fd_damsm(ctx: MetricContext) -> dict[str, Any]:
    extractor = ctx.memo("damsm", lambda: DAMSMImageFeatures(ctx.require("image_encoder", "fd_damsm")))
    return _frechet(ctx, extractor, "fd_damsm", "fd_damsm")


@register("fd_classifier")
def fd_classifier(ctx: MetricContext) -> dict[str, Any]:
    extractor = ctx.memo("classifier", lambda: ClassifierFeatures(ctx.require("classifier", "fd_classifier")))
    return _frechet(ctx, extractor, "fd_classifier", "fd_classifier")
