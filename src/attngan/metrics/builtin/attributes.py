"""Attribute accuracy against the caption, judged by a classifier trained on real images only.

* ``scene_accuracy`` (shapes): every object of the caption scored by the slot scene classifier
  (:mod:`attngan.metrics.scenes`): shape, colour, size, position, count, background.
* ``attribute_accuracy`` (tags): one value per attribute (hair, eye colour) per image.

Both give ``real_*`` ceilings (the classifier on the captions' real images) and, for reports,
confusion matrices of what the caption asks for against what the classifier reads.
"""

from __future__ import annotations

from typing import Any

import torch

from ..classifier import confusion_counts, predict_attributes, summarise_attribute_hits
from ..engine import Capabilities, EvalContext, Metric, SampleBatch, needed_classifier, register_metric
from ..records import MetricRecord
from ..scenes import (
    SceneHits,
    require_scene_classifier,
    scene_accuracy_result,
    scene_confusions,
    scene_hits,
    scene_table,
)


def _classifier_extra(ctx: EvalContext) -> dict[str, Any]:
    return {"num_real": ctx.samples.num_real, "classifier": ctx.classifier_info or {}}


@register_metric
class SceneAccuracy(Metric):
    name = "scene_accuracy"
    needs = ("scenes", "classifier")
    order = 20

    def applies(self, caps: Capabilities) -> bool:
        return caps.scenes

    def setup(self, ctx: EvalContext) -> None:
        require_scene_classifier(needed_classifier(ctx), "classifier")

    def collect(self, batch: SampleBatch, ctx: EvalContext) -> dict[str, SceneHits]:
        out = {"hits": scene_hits(needed_classifier(ctx), batch["images"], batch["scenes"], batch["names_background"])}
        if batch["real_first"].shape[0]:
            out["real_hits"] = scene_hits(needed_classifier(ctx), batch["real_first"], batch.first("scenes"),
                                          batch.first("names_background"))
        return out

    def summarise(self, parts: dict[str, list[Any]], ctx: EvalContext) -> dict[str, Any]:
        hits, real = SceneHits.cat(parts["hits"]), SceneHits.cat(parts["real_hits"])
        confusion = {f"{name} (every object)": table for name, table in scene_confusions(hits).items()}
        return {**scene_accuracy_result(needed_classifier(ctx), hits, real), **_classifier_extra(ctx),
                "details": {"scene_hits": hits, "real_scene_hits": real, "confusion": confusion}}

    def rows(self, record: MetricRecord) -> list[tuple[str, str, str]]:
        values = record["values"]
        real = values.get("real_accuracy_all")
        return [("all attributes, every caption (table below)", f"{values['accuracy_all']:.4f}",
                 f"{real:.4f} (real ceiling)" if real is not None else "")]

    def notes(self, record: MetricRecord) -> list[str]:
        split = record["dataset"]["split"]
        return [f"per-object accuracy on the {split} split (gen: generated images; real: the captions' real images, "
                "the ceiling; background scored where the caption names it)", *scene_table(record["values"])]


@register_metric
class AttributeAccuracy(Metric):
    name = "attribute_accuracy"
    needs = ("attributes", "no_scenes", "classifier")
    order = 21

    def applies(self, caps: Capabilities) -> bool:
        return not caps.scenes

    def collect(self, batch: SampleBatch, ctx: EvalContext) -> dict[str, torch.Tensor]:
        k = len(needed_classifier(ctx).config.attribute_names)
        wanted = batch["attributes"][:, :k]
        out = {"wanted": wanted, "read": predict_attributes(needed_classifier(ctx), batch["images"])}
        if batch["real_first"].shape[0]:
            out["real_wanted"] = wanted[batch["first_pass"]]
            out["real_read"] = predict_attributes(needed_classifier(ctx), batch["real_first"])
        return out

    def summarise(self, parts: dict[str, list[Any]], ctx: EvalContext) -> dict[str, Any]:
        classifier = needed_classifier(ctx)
        names = classifier.config.attribute_names
        wanted, read = torch.cat(parts["wanted"]), torch.cat(parts["read"])
        values = summarise_attribute_hits(read == wanted, names)
        real = torch.cat(parts["real_read"]) == torch.cat(parts["real_wanted"])
        values.update({f"real_{k}": v for k, v in summarise_attribute_hits(real, names).items()})
        labels = classifier.metadata.get("attribute_values") or [
            [str(v) for v in range(n)] for n in classifier.config.num_values_per_attribute]
        confusion = {}
        for a, name in enumerate(names):
            counts = confusion_counts(wanted[:, a], read[:, a], classifier.config.num_values_per_attribute[a])
            confusion[name] = (counts[:, :-1], list(labels[a]), list(labels[a]))
        return {"values": values,
                "label": "attribute accuracy of generated images (real_*: the same classifier on the real images "
                         "of the captions, the ceiling)",
                "feature_extractor": f"attribute classifier {list(names)}", "num_samples": int(wanted.shape[0]),
                **_classifier_extra(ctx), "details": {"confusion": confusion}}

    def rows(self, record: MetricRecord) -> list[tuple[str, str, str]]:
        values = record["values"]
        rows = []
        for key in [k for k in values if k.startswith("accuracy_")]:
            real = values.get("real_" + key)
            rows.append((f"accuracy {key[len('accuracy_'):]}", f"{values[key]:.4f}",
                         f"{real:.4f} (real ceiling)" if real is not None else ""))
        return rows
