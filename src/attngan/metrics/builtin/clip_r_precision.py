"""``clip_r_precision``: R-precision (R = 1) by CLIP, TISE's protocol (its COCO text relevance,
``RP_coco.py``): per generated image, its caption and 99 mismatched captions are ranked by CLIP
(OpenAI's ViT-B/32 there); a hit when the true caption ranks first (ties count as hits, as the
``argmax`` over [true, mismatched] counts them). The mismatched captions are those ``r_precision``
draws for the same sample (captions of other classes from every caption of the split, seed
``[seed, 4, k]``), so the two metrics rank the same candidates; the hits are cut into the same
shuffled folds (seed ``[seed, 2]``): mean and std of the fold means. ``real_*``: the same on the
real images of the captions (TISE tables 83.54 for COCO's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...errors import SettingError
from ..clip import TextFeatureCache, caption_features, clip_extras, clip_of
from ..engine import Capabilities, EvalContext, Metric, Row, SampleBatch, register_metric
from ..protocol import DISTRACTOR_STREAM, stream_seed
from ..r_precision import hits_row, r_precision_from_features, summarise_hits
from ..records import MetricRecord


@register_metric
class CLIPRPrecision(Metric):
    name = "clip_r_precision"
    order = 120

    def weights(self, caps: Capabilities) -> str | None:
        return "clip"

    def setup(self, ctx: EvalContext) -> None:
        self.clip = clip_of(ctx)
        self.pool = ctx.resource("caption_pool", ctx.samples.caption_pool)
        if self.pool.texts is None:
            raise SettingError("metrics", "clip_r_precision needs the captions of the split as text")
        self.pool_features = ctx.resource(f"clip-pool:{self.clip.identity}",
                                          lambda: TextFeatureCache(self.clip, self.pool.texts or []))

    def _hits(self, images: torch.Tensor, text: torch.Tensor, class_ids: torch.Tensor, indices: torch.Tensor,
              ctx: EvalContext) -> torch.Tensor:
        """``[B]`` hits of image embeddings ``[B, D]`` with their captions' ``[B, D]`` among
        ``r_distractors`` mismatched captions each."""
        if images.shape[0] == 0:
            return torch.zeros(0, dtype=torch.bool)
        count, seed = ctx.cfg.r_distractors, ctx.cfg.seed
        drawn = [self.pool.mismatched_indices(int(c), count,
                                              np.random.default_rng(stream_seed(seed, DISTRACTOR_STREAM, int(k))))
                 for c, k in zip(class_ids, indices)]
        wrong = self.pool_features.get(np.concatenate(drawn)).reshape(len(drawn), count, -1)
        return r_precision_from_features(images, text, wrong)

    def collect(self, batch: SampleBatch, ctx: EvalContext) -> dict[str, torch.Tensor]:
        text = caption_features(batch, self.clip)
        hits = self._hits(batch.features(self.clip), text, batch["class_ids"], batch["indices"], ctx)
        first = batch["first_pass"]
        real = torch.zeros(0, dtype=torch.bool)
        if bool(first.any()):
            real = self._hits(batch.features(self.clip, real=True), text[first], batch["class_ids"][first],
                              batch["indices"][first], ctx)
        return {"hits": hits, "real_hits": real}

    def summarise(self, parts: dict[str, list[Any]], ctx: EvalContext) -> dict[str, Any]:
        cfg = ctx.cfg
        hits, real = torch.cat(parts["hits"]), torch.cat(parts["real_hits"])
        summary = summarise_hits("clip_r_precision", hits, real, cfg.r_folds, cfg.seed, cfg.r_distractors)
        return {
            **summary,
            "label": f"CLIP R-precision (TISE: true caption + {cfg.r_distractors} mismatched, ranked by CLIP, "
                     f"{summary['num_folds']} shuffled folds, ties count as hits; real_*: the real images of the "
                     "captions)",
            "feature_extractor": self.clip.identity, **clip_extras(self.clip),
            "details": {"clip_r_hits": hits, "real_clip_r_hits": real},
        }

    def rows(self, record: MetricRecord) -> list[Row]:
        return [hits_row("CLIP R-precision", "clip_r_precision", record)]

    def notes(self, record: MetricRecord) -> list[str]:
        extra = record["extra"]
        return [f"CLIP R-precision over {record['num_samples']} images, true caption + {extra['num_distractors']} "
                f"mismatched (those of r_precision), mean ± std over {extra['num_folds']} shuffled folds "
                f"(seed {extra['fold_seed']}); CLIP: {record['feature_extractor']}"]
