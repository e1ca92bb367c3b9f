"""What the batch worker thread runs: several requests in one pipeline call, then PNGs.

Requests of one batch share a stage count. Their captions are repeated once per image and
their per-image seeds concatenated, so every image is exactly what the pipeline gives for
that caption and seed alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from ..losses.damsm import cosine_similarity_matrix, word_image_similarity
from ..text import EncodedCaption
from .batching import Job
from .render import attention_png, images_to_png, signed_heatmap_png

log = logging.getLogger(__name__)

# DAMSM smoothing factors of the original (gamma1 for regions, gamma2 for words).
DAMSM_GAMMA1 = 4.0
DAMSM_GAMMA2 = 5.0


@dataclass(frozen=True)
class Task:
    """One request: images of ``caption`` with ``seeds`` (one per image)."""

    caption: str
    seeds: list[int]
    stages: int
    include_attention: bool = True
    explain: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return ("explain" if self.explain else "generate", self.stages)


@dataclass
class ImageResult:
    """One image: PNG of every stage and, per refinement stage, one overlay per word."""

    seed: int
    stage_pngs: list[bytes]
    stage_sizes: list[int]
    attention: list[dict[str, Any]] = field(default_factory=list)  # {stage, size, words: [(word, png)]}


@dataclass
class TaskResult:
    encoded: EncodedCaption
    images: list[ImageResult]
    explain: dict[str, Any] | None = None


def stage_numbers(num_images: int, num_maps: int) -> list[int]:
    """1-based number of the stage each attention map fed (DCGAN variant: the one image)."""
    if num_images == num_maps + 1:
        return [i + 2 for i in range(num_maps)]
    return [num_images] * num_maps


def run_batch(pipeline: Any, jobs: list[Job], batch_size: int) -> list[TaskResult]:
    """Run the tasks of ``jobs`` (one shared key) in one pipeline call."""
    tasks: list[Task] = [job.payload for job in jobs]
    captions = [t.caption for t in tasks for _ in t.seeds]
    seeds = [s for t in tasks for s in t.seeds]
    explain = tasks[0].explain
    out = pipeline(captions, num_images=1, seed=seeds, num_stages=tasks[0].stages,
                   return_intermediates=explain, batch_size=batch_size)
    pngs = [images_to_png(stage) for stage in out.images]  # [stage][image]
    sizes = [int(stage.shape[-1]) for stage in out.images]
    numbers = stage_numbers(len(out.images), len(out.attention_maps))
    results, k = [], 0
    for task in tasks:
        images = []
        for seed in task.seeds:
            tokens = out.captions[k].tokens
            attention = []
            if task.include_attention:
                for number, maps in zip(numbers, out.attention_maps):
                    words = [(w, attention_png(maps[k, t].cpu())) for t, w in enumerate(tokens)]
                    attention.append({"stage": number, "size": int(maps.shape[-1]), "words": words})
            images.append(ImageResult(seed, [p[k] for p in pngs], sizes, attention))
            k += 1
        first = k - len(task.seeds)
        detail = _explain(pipeline, out, first) if task.explain else None
        results.append(TaskResult(out.captions[first], images, detail))
    return results


def _vector(values: torch.Tensor) -> dict[str, Any]:
    v = values.detach().float().cpu()
    return {"values": [round(float(x), 5) for x in v], "norm": round(float(v.norm()), 5)}


def _explain(pipeline: Any, out: Any, k: int) -> dict[str, Any]:
    """The intermediate values of image ``k``: text features, conditioning, DAMSM."""
    inter = out.intermediates
    tokens = out.captions[k].tokens
    words = inter["word_features"][k, :, : len(tokens)].float().cpu()  # [D, T]
    mu, logvar = inter["mu"][k], inter["logvar"][k]
    detail: dict[str, Any] = {
        "text_encoder": {
            "tokens": tokens,
            "word_features_png": signed_heatmap_png(words.t().numpy()),
            "word_features_shape": [len(tokens), int(words.shape[0])],
            "word_norms": [round(float(x), 5) for x in words.norm(dim=0)],
            "sentence": _vector(inter["sentence_features"][k]),
        },
        "conditioning": {
            "mu": _vector(mu),
            "sigma": _vector(torch.exp(0.5 * logvar.float())),
            "condition": _vector(inter["condition"][k]),
            "noise_dim": int(inter["noise"].shape[1]),
        },
        "damsm": {"available": False},
    }
    encoder = pipeline.bundle.image_encoder
    if encoder is not None:
        detail["damsm"] = _damsm(encoder, out.images[-1][k:k + 1], words, inter["sentence_features"][k], tokens)
    return detail


@torch.inference_mode()
def _damsm(encoder: torch.nn.Module, image: torch.Tensor, words: torch.Tensor, sentence: torch.Tensor,
           tokens: list[str]) -> dict[str, Any]:
    """How well the DAMSM encoders think the last image matches the caption."""
    device = next(encoder.parameters()).device
    regions, global_code = encoder(image.to(device).float())
    word_batch = words[None].to(device)
    lengths = torch.tensor([len(tokens)], device=device)
    score, attention = word_image_similarity(regions.float(), word_batch, lengths, DAMSM_GAMMA1, DAMSM_GAMMA2)
    cosine = cosine_similarity_matrix(sentence[None].to(device).float(), global_code.float())
    return {
        "available": True,
        "sentence_image_cosine": round(float(cosine[0, 0]), 5),
        "word_region_score": round(float(score[0, 0]), 5),
        "region_size": int(regions.shape[-1]),
        "words": [(w, attention_png(attention[0, t].cpu())) for t, w in enumerate(tokens)],
    }
