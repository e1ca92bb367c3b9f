"""``clip_score``: how well each generated image matches its caption by CLIP (a local weights file,
:mod:`attngan.metrics.clip`).

Per image, the cosine similarity ``cos`` of its CLIP image embedding and its caption's text
embedding. Reported over the images:

* ``clip_score``: ``100 * mean(cos)``, the images fed as CLIP's preprocessing feeds a PNG (8 bits,
  bicubic 224, CLIP's mean/std) -- the figure GALIP tables (as a fraction: 0.3164 is 31.64 here);
* ``clip_score_galip``: the same with the images fed as GALIP's evaluation code feeds them
  (float images, nearest-neighbour 224, its doubled [0, 1] shift: :func:`~attngan.metrics.clip.galip_input`),
  the figure to hold against GALIP's own numbers;
* ``clipscore``: CLIPScore (Hessel et al. 2021), ``mean(2.5 * max(cos, 0))`` on CLIP's input.

``real_*``: the same for the real images of the captions (each once).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..clip import caption_features, clip_extras, clip_of
from ..engine import Capabilities, EvalContext, Metric, Row, SampleBatch, register_metric
from ..records import MetricRecord

CLIPSCORE_WEIGHT = 2.5  # Hessel et al.'s w


def clip_cosines(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """``[N]`` cosine similarities of image embeddings ``[N, D]`` and text embeddings ``[N, D]`` (row by row)."""
    if image_features.shape != text_features.shape:
        raise ValueError(f"image and text features must both be [N, D], got {tuple(image_features.shape)} and "
                         f"{tuple(text_features.shape)}")
    return F.cosine_similarity(image_features.double(), text_features.double(), dim=1)


def clip_figures(cosines: torch.Tensor) -> tuple[float, float]:
    """``(100 * mean(cos), mean(2.5 * max(cos, 0)))`` of cosines ``[N]``."""
    c = cosines.double()
    return 100.0 * float(c.mean()), float((CLIPSCORE_WEIGHT * c.clamp(min=0)).mean())


@register_metric
class CLIPScore(Metric):
    name = "clip_score"
    order = 110

    def weights(self, caps: Capabilities) -> str | None:
        return "clip"

    def setup(self, ctx: EvalContext) -> None:
        self.clip = clip_of(ctx)

    def collect(self, batch: SampleBatch, ctx: EvalContext) -> dict[str, torch.Tensor]:
        text = caption_features(batch, self.clip)
        galip = batch.memo(f"clip-galip:{self.clip.identity}", lambda: self.clip.galip_features(batch["images"]).cpu())
        out = {"cos": clip_cosines(batch.features(self.clip), text), "cos_galip": clip_cosines(galip, text),
               "real_cos": torch.zeros(0, dtype=torch.float64), "real_cos_galip": torch.zeros(0, dtype=torch.float64)}
        first = text[batch["first_pass"]]
        if first.shape[0]:
            out["real_cos"] = clip_cosines(batch.features(self.clip, real=True), first)
            out["real_cos_galip"] = clip_cosines(self.clip.galip_features(batch["real_first"]).cpu(), first)
        return out

    def summarise(self, parts: dict[str, list[Any]], ctx: EvalContext) -> dict[str, Any]:
        cos, real = torch.cat(parts["cos"]), torch.cat(parts["real_cos"])
        score, clipscore = clip_figures(cos)
        real_score, real_clipscore = clip_figures(real)
        galip, _ = clip_figures(torch.cat(parts["cos_galip"]))
        real_galip, _ = clip_figures(torch.cat(parts["real_cos_galip"]))
        return {
            "values": {"clip_score": score, "real_clip_score": real_score, "clip_score_galip": galip,
                       "real_clip_score_galip": real_galip, "clipscore": clipscore, "real_clipscore": real_clipscore},
            "label": "CLIP score: 100 x mean cosine of image and caption embeddings (GALIP's figure x 100); "
                     "clip_score_galip: images fed as GALIP's code feeds them; clipscore: mean 2.5 max(cos, 0) "
                     "(Hessel et al.); real_*: the real images of the captions",
            "feature_extractor": self.clip.identity, "num_samples": int(cos.numel()),
            "num_reference": int(real.numel()), **clip_extras(self.clip),
            "galip_input": f"float images in [-1, 1] -> (x + 1) / 2 -> nearest {self.clip.image_size} -> "
                           "((x + 1) / 2 - mean) / std",
            "details": {"clip_cosines": cos, "real_clip_cosines": real},
        }

    def rows(self, record: MetricRecord) -> list[Row]:
        v = record["values"]
        return [("CLIP score (100 x cosine)", f"{v['clip_score']:.2f}", f"{v['real_clip_score']:.2f}"),
                ("CLIP score, GALIP's input", f"{v['clip_score_galip']:.2f}", f"{v['real_clip_score_galip']:.2f}"),
                ("CLIPScore (2.5 max(cos, 0))", f"{v['clipscore']:.4f}", f"{v['real_clipscore']:.4f}")]

    def notes(self, record: MetricRecord) -> list[str]:
        extra = record["extra"]
        return [f"CLIP scores over {record['num_samples']} images ({extra['num_reference']} real), "
                f"CLIP: {record['feature_extractor']}",
                f"  {extra['captions']}"]
