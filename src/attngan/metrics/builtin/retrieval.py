"""``r_precision``: AttnGAN's R-precision (R = 1) with the model's own DAMSM encoders.

Per generated image: its caption and 99 captions of other classes (drawn from every caption of
the split, seed ``[seed, 4, k]`` for sample ``k``) are encoded by the DAMSM text encoder, the
image by the DAMSM image encoder; a hit when the true caption's cosine similarity is the
highest (ties count as hits, as the reference's ``argmax`` counts them). The hits are shuffled
(seed ``[seed, 2]``) and cut into 10 folds; the result is the mean and std of the fold means,
as DM-GAN's evaluation code reports them. ``real_*``: the same on the captions' real images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..engine import EvalContext, Metric, SampleBatch, needed_image_encoder, register_metric
from ..in_domain import DAMSMImageFeatures, module_fingerprint
from ..protocol import DISTRACTOR_STREAM, FOLD_STREAM, shuffled_folds, stream_seed
from ..r_precision import CaptionPool, eval_mode, r_precision_from_features
from ..records import MetricRecord


@torch.inference_mode()
def retrieval_hits(image_codes: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, class_ids: torch.Tensor,
                   indices: torch.Tensor, text_encoder: torch.nn.Module, pool: CaptionPool, num_distractors: int,
                   seed: int) -> torch.Tensor:
    """``[B]`` bool: no mismatched caption ranks above the true one (``tokens [B, T]``), for image
    codes ``[B, D]``; sample ``indices [B]`` seed their distractor draws."""
    if image_codes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool)
    device = next(text_encoder.parameters()).device
    _, true_sent = text_encoder(tokens.to(device), lengths)
    drawn = [pool.sample_mismatched(int(c), num_distractors,
                                    np.random.default_rng(stream_seed(seed, DISTRACTOR_STREAM, int(k))))
             for c, k in zip(class_ids, indices)]
    wrong_tokens = torch.cat([t for t, _ in drawn])
    wrong_lengths = torch.cat([n for _, n in drawn])
    width = int(wrong_lengths.max())
    _, wrong = text_encoder(wrong_tokens[:, :width].to(device), wrong_lengths)
    wrong = wrong.reshape(len(drawn), num_distractors, -1)
    return r_precision_from_features(image_codes.cpu(), true_sent.cpu(), wrong.cpu()).cpu()


@register_metric
class RPrecision(Metric):
    name = "r_precision"
    needs = ("image_encoder",)
    order = 10

    def setup(self, ctx: EvalContext) -> None:
        self.damsm = ctx.resource("damsm", lambda: DAMSMImageFeatures(needed_image_encoder(ctx)))
        self.pool = ctx.resource("caption_pool", ctx.samples.caption_pool)

    def collect(self, batch: SampleBatch, ctx: EvalContext) -> dict[str, torch.Tensor]:
        cfg, text_encoder = ctx.cfg, ctx.bundle.text_encoder
        with eval_mode(text_encoder):
            hits = retrieval_hits(batch.features(self.damsm), batch["tokens"], batch["lengths"], batch["class_ids"],
                                  batch["indices"], text_encoder, self.pool, cfg.r_distractors, cfg.seed)
            tokens, lengths, class_ids, indices = (batch.first(k) for k in ("tokens", "lengths", "class_ids", "indices"))
            real = retrieval_hits(batch.features(self.damsm, real=True), tokens, lengths, class_ids, indices,
                                  text_encoder, self.pool, cfg.r_distractors, cfg.seed)
        return {"hits": hits, "real_hits": real}

    def summarise(self, parts: dict[str, list[Any]], ctx: EvalContext) -> dict[str, Any]:
        cfg = ctx.cfg
        hits, real = torch.cat(parts["hits"]), torch.cat(parts["real_hits"])
        folds, seed = min(cfg.r_folds, hits.numel()), stream_seed(cfg.seed, FOLD_STREAM)
        mean, std = shuffled_folds(hits, folds, seed)
        real_mean, real_std = shuffled_folds(real, min(folds, real.numel()), seed)
        text = ctx.bundle.text_encoder
        return {
            "values": {"r_precision": mean, "r_precision_std": std, "real_r_precision": real_mean,
                       "real_r_precision_std": real_std},
            "label": f"R-precision (true caption + {cfg.r_distractors} mismatched, DAMSM encoders, {folds} shuffled "
                     "folds, ties count as hits; real_*: the real images of the captions)",
            "feature_extractor": self.damsm.identity, "num_samples": int(hits.numel()),
            "num_distractors": cfg.r_distractors, "num_folds": folds, "fold_seed": seed,
            "distractor_seeds": f"[{cfg.seed}, {DISTRACTOR_STREAM}, sample index]", "ties": "hit",
            "text_encoder": f"DAMSM text encoder ({type(text).__name__}), weights sha256:{module_fingerprint(text)}",
            "image_encoder": self.damsm.identity,
            "details": {"r_hits": hits, "real_r_hits": real},
        }

    def rows(self, record: MetricRecord) -> list[tuple[str, str, str]]:
        values = record["values"]
        return [(f"R-precision ({record['extra']['num_folds']} folds)",
                 f"{values['r_precision']:.4f} ± {values['r_precision_std']:.4f}",
                 f"{values['real_r_precision']:.4f} ± {values['real_r_precision_std']:.4f}")]

    def notes(self, record: MetricRecord) -> list[str]:
        extra = record["extra"]
        return [f"R-precision over {record['num_samples']} images, true caption + {extra['num_distractors']} "
                f"mismatched captions, mean ± std over {extra['num_folds']} shuffled folds (seed {extra['fold_seed']})",
                f"  text encoder:  {extra['text_encoder']}",
                f"  image encoder: {extra['image_encoder']}"]
