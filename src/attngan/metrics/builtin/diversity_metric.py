"""``diversity`` (shapes): for each of the split's first captions, the mean pairwise distance of
the images of N seeds against that of N real renderings of the caption's scene (attribute
classifier features; 32x32 pixels as a cross-check). See :mod:`attngan.metrics.diversity`."""

from __future__ import annotations

from typing import Any

import torch

from ...text import pad_batch
from ..diversity import diversity_ratio, shapes_captions_and_real_sets
from ..engine import EvalContext, Metric, needed_classifier, register_metric
from ..in_domain import ClassifierFeatures
from ..records import MetricRecord


@register_metric
class Diversity(Metric):
    name = "diversity"
    needs = ("scenes", "classifier")
    order = 50

    def summarise(self, parts: dict[str, list[Any]], ctx: EvalContext) -> dict[str, Any]:
        cfg = ctx.cfg
        captions, reals = shapes_captions_and_real_sets(cfg.split, cfg.diversity_captions, cfg.diversity_seeds,
                                                        ctx.image_size)

        def generate(texts: list[str], seeds: list[int]) -> torch.Tensor:
            return ctx.generate(*pad_batch([e.ids for e in ctx.pipeline.encode_captions(texts)]), seeds)

        features = ctx.resource("classifier_features", lambda: ClassifierFeatures(needed_classifier(ctx)))
        figures = diversity_ratio(generate, captions, reals, features.features, cfg.diversity_seeds, cfg.seed)
        return {"values": figures, "num_samples": figures["num_captions"] * figures["num_seeds"],
                "feature_extractor": features.identity,
                "label": f"mean pairwise distance of {cfg.diversity_seeds} seeds per caption over that of as many real "
                         "renderings of its scene (classifier features; diversity_pixels_*: 32x32 pixels)",
                "split": cfg.split}

    def rows(self, record: MetricRecord) -> list[tuple[str, str, str]]:
        values = record["values"]
        return [(f"diversity, {values['num_seeds']} seeds x {values['num_captions']} captions",
                 f"{values['diversity_generated']:.4f}",
                 f"{values['diversity_real']:.4f} (real); ratio {values['diversity_ratio']:.3f}, "
                 f"pixels {values['diversity_pixels_ratio']:.3f}")]
