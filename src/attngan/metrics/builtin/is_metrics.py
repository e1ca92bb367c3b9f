"""Inception Scores: ``exp(E_x KL(p(y|x) || p(y)))`` over 10 splits of a seeded shuffle of the
generated images (seed ``[seed, 3]``), mean and std over the splits.

* ``is``: the network the papers use for the data set. CUB: StackGAN's birds-fine-tuned
  Inception-v3 (50 bird classes) when a PyTorch copy is given (``--birds-inception-weights``);
  without it, the TF ImageNet Inception, and the table says "ImageNet Inception, not the
  papers'". Elsewhere (COCO): the TF ImageNet Inception-v3 2015-12-05 (1008 classes, bias-free
  logits, as the improved-GAN code), the network of the papers' COCO scores.
* ``is_torchvision``: torchvision's ImageNet Inception-v3, fed as ``fid_torchvision``; no paper
  reports it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..engine import Capabilities, EvalContext, Metric, SampleBatch, register_metric
from ..inception_score import inception_score_from_logits
from ..protocol import IS_SPLIT_STREAM, stream_seed
from ..records import MetricRecord

NOT_THE_PAPERS = "ImageNet Inception, not the papers'"


class _InceptionScore(Metric):
    title: ClassVar[str] = ""  # the table's row label

    def kind_for(self, caps: Capabilities) -> str:
        raise NotImplementedError

    def weights(self, caps: Capabilities) -> str | None:
        return self.kind_for(caps)

    def setup(self, ctx: EvalContext) -> None:
        self.kind = self.kind_for(ctx.caps)
        self.net = ctx.inception(self.kind)

    def collect(self, batch: SampleBatch, ctx: EvalContext) -> dict[str, torch.Tensor]:
        return {"logits": batch.features_and_logits(self.net)[1]}

    def summarise(self, parts: dict[str, list[Any]], ctx: EvalContext) -> dict[str, Any]:
        logits = torch.cat(parts["logits"])
        splits, seed = min(ctx.cfg.is_splits, logits.shape[0]), stream_seed(ctx.cfg.seed, IS_SPLIT_STREAM)
        mean, std = inception_score_from_logits(logits, splits, seed)
        label, papers = self.net.is_label, self.papers_network(ctx)
        if papers is False:
            label += f"; {NOT_THE_PAPERS} (they use StackGAN's birds-fine-tuned Inception: --birds-inception-weights)"
        return {"values": {self.name: mean, f"{self.name}_std": std}, "label": label,
                "feature_extractor": self.net.identity, "num_samples": int(logits.shape[0]), "splits": splits,
                "split_seed": seed, "network": self.kind, "papers_network": papers}

    def papers_network(self, ctx: EvalContext) -> bool | None:
        """Whether this is the network of the papers' tables for the data set (None: no paper reports it)."""
        return None

    def rows(self, record: MetricRecord) -> list[tuple[str, str, str]]:
        values, extra = record["values"], record["extra"]
        title = self.title + (f" ({NOT_THE_PAPERS})" if extra.get("papers_network") is False else "")
        return [(title, f"{values[self.name]:.4f} ± {values[self.name + '_std']:.4f}",
                 f"{extra['splits']} shuffled splits")]


@register_metric
class InceptionScore(_InceptionScore):
    name = "is"
    title = "IS"
    order = 80

    def kind_for(self, caps: Capabilities) -> str:
        return "birds" if caps.data_kind == "cub" and caps.weights.get("birds") is not None else "tf"

    def papers_network(self, ctx: EvalContext) -> bool | None:
        if ctx.cfg.data.kind == "cub":
            return self.kind == "birds"
        return True if ctx.cfg.data.kind in ("coco", "coco-json") else None


@register_metric
class InceptionScoreTorchvision(_InceptionScore):
    name = "is_torchvision"
    title = "IS (torchvision, nobody's published IS)"
    order = 100

    def kind_for(self, caps: Capabilities) -> str:
        return "torchvision"
