"""Fréchet distances between the generated images and the real images of the same captions
(each real image once), in four feature spaces:

* ``fid``: pool3 of the TensorFlow Inception-v3 (2015-12-05) through torch-fidelity's
  TF-compatible resize: the standard FID (as pytorch-fid / TTUR), scipy ``sqrtm``;
* ``fid_torchvision``: average-pooled Mixed_7c of torchvision's ImageNet Inception-v3 fed
  exactly as DM-GAN's and DF-GAN's FID code feeds it (:func:`~attngan.metrics.inception.pytorch_fid_input`):
  the "PyTorch FID" of their tables;
* ``fd_damsm`` / ``fd_classifier``: in-domain distances on features of networks trained on the
  data itself (the model's DAMSM image encoder, the attribute classifier), with a floor: the
  distance between those real images and as many other real images of the same distribution.
"""

from __future__ import annotations

from typing import Any

import torch

from ..engine import (
    Capabilities,
    EvalContext,
    Metric,
    SampleBatch,
    format_value,
    needed_classifier,
    needed_image_encoder,
    register_metric,
)
from ..fid import FeatureStats, stats_distance
from ..in_domain import ClassifierFeatures, DAMSMImageFeatures
from ..records import MetricRecord


def _stats(chunks: list[torch.Tensor], meta: dict[str, Any]) -> FeatureStats:
    x = torch.cat([c for c in chunks if c.numel()])
    stats = FeatureStats(x.shape[1], meta)
    stats.update(x)
    return stats


class _InceptionFrechet(Metric):
    """FID on an Inception network's pool features; the generated images' features are shared
    with the Inception Score of the same network."""

    kind = "tf"
    title = "FID"
    min_real = 2

    def weights(self, caps: Capabilities) -> str | None:
        return self.kind

    def setup(self, ctx: EvalContext) -> None:
        self.net = ctx.inception(self.kind)

    def collect(self, batch: SampleBatch, ctx: EvalContext) -> dict[str, torch.Tensor]:
        return {"gen": batch.features_and_logits(self.net)[0], "real": batch.features(self.net, real=True)}

    def summarise(self, parts: dict[str, list[Any]], ctx: EvalContext) -> dict[str, Any]:
        meta = {"extractor": self.net.identity}
        gen, real = _stats(parts["gen"], meta), _stats(parts["real"], meta)
        return {"values": {self.name: stats_distance(gen, real, ctx.cfg.fid_method)}, "label": self.net.fid_label,
                "feature_extractor": self.net.identity, "num_samples": gen.num_samples,
                "num_reference": real.num_samples, "method": ctx.cfg.fid_method}

    def rows(self, record: MetricRecord) -> list[tuple[str, str, str]]:
        return [(self.title, format_value(record["values"][self.name]),
                 f"against {record['extra']['num_reference']} real {record['dataset']['split']} images")]


@register_metric
class FID(_InceptionFrechet):
    name = "fid"
    kind = "tf"
    title = "FID"
    order = 70


@register_metric
class FIDTorchvision(_InceptionFrechet):
    name = "fid_torchvision"
    kind = "torchvision"
    title = "PyTorch FID (DM-GAN/DF-GAN's)"
    order = 90


class _InDomain(Metric):
    """An in-domain Fréchet distance with its real floor (``<name>_real_floor``)."""

    min_real = 2
    title = ""

    def extractor(self, ctx: EvalContext) -> Any:
        raise NotImplementedError

    def setup(self, ctx: EvalContext) -> None:
        self.features = self.extractor(ctx)
        ctx.request_floor(self.name, self.features)

    def collect(self, batch: SampleBatch, ctx: EvalContext) -> dict[str, torch.Tensor]:
        return {"gen": batch.features(self.features), "real": batch.features(self.features, real=True)}

    def collect_once(self, ctx: EvalContext) -> dict[str, list[torch.Tensor]]:
        return {"floor": ctx.floor_features.get(self.name, [])}

    def summarise(self, parts: dict[str, list[Any]], ctx: EvalContext) -> dict[str, Any]:
        meta = {"extractor": self.features.identity}
        gen, real = _stats(parts["gen"], meta), _stats(parts["real"], meta)
        values = {self.name: stats_distance(gen, real, method="eigh")}
        floor = parts.get("floor", [])
        num_floor = sum(int(f.shape[0]) for f in floor)
        if num_floor >= 2:
            values[f"{self.name}_real_floor"] = stats_distance(_stats(floor, meta), real, method="eigh")
        split = ctx.cfg.split
        return {"values": values, "label": f"{self.features.fid_label}; floor: real {ctx.floor_description} vs real "
                                           f"{split} images of the same count",
                "feature_extractor": self.features.identity, "num_samples": gen.num_samples,
                "num_reference": real.num_samples, "num_floor": num_floor, "floor_split": ctx.floor_description}

    def rows(self, record: MetricRecord) -> list[tuple[str, str, str]]:
        values = record["values"]
        floor = values.get(f"{self.name}_real_floor")
        return [(f"in-domain FD ({self.title})", format_value(values[self.name]),
                 f"{format_value(floor)} (real {record['extra']['floor_split']} vs {record['dataset']['split']} "
                 "floor)" if floor is not None else "")]


@register_metric
class FDDamsm(_InDomain):
    name = "fd_damsm"
    needs = ("image_encoder",)
    title = "DAMSM"
    order = 30

    def extractor(self, ctx: EvalContext) -> Any:
        return ctx.resource("damsm", lambda: DAMSMImageFeatures(needed_image_encoder(ctx)))


@register_metric
class FDClassifier(_InDomain):
    name = "fd_classifier"
    needs = ("attributes", "classifier")
    title = "classifier"
    order = 40

    def extractor(self, ctx: EvalContext) -> Any:
        return ctx.resource("classifier_features", lambda: ClassifierFeatures(needed_classifier(ctx)))
