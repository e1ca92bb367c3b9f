"""What the batch worker thread runs: several requests in one pipeline call, then PNGs.

Requests of one batch share a stage count and a truncation. Their captions are repeated once per image and
their per-image seeds concatenated, so every image is exactly what the pipeline gives for
that caption and seed alone. Each request is prepared (its caption encoded) and rendered on
its own: a request that fails there gets its own exception in place of a result, and the
others of its batch are served (see :mod:`.batching` for failures of the joint forward pass).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import DAMSMLossConfig
from ..inference.pipeline import AttnGANPipeline, PipelineOutput
from ..losses.damsm import cosine_similarity_matrix, word_image_similarity
from ..text import EncodedCaption
from .batching import Job
from .render import attention_png, images_to_png, signed_heatmap_png

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One request: images of ``caption`` with ``seeds`` (one per image); ``truncation`` None: the
    pipeline's default."""

    caption: str
    seeds: list[int]
    stages: int
    include_attention: bool = True
    explain: bool = False
    truncation: float | None = None

    @property
    def key(self) -> tuple[str, int, float | None]:
        return ("explain" if self.explain else "generate", self.stages, self.truncation)


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
    truncation: float = 1.0  # the value the images were drawn with


def stage_numbers(num_images: int, num_maps: int) -> list[int]:
    """1-based number of the stage each attention map fed (DCGAN variant: the one image)."""
    if num_images == num_maps + 1:
        return [i + 2 for i in range(num_maps)]
    return [num_images] * num_maps


def run_batch(pipeline: AttnGANPipeline, jobs: list[Job], batch_size: int) -> list[TaskResult | Exception]:
    """Run the tasks of ``jobs`` (one shared key) in one pipeline call.

    Returns one :class:`TaskResult` per job, or the exception that job alone raised while its
    caption was encoded or its images rendered. An exception of the joint pipeline call
    itself propagates (the batcher then runs the jobs one at a time).
    """
    tasks: list[Task] = [job.payload for job in jobs]
    outcomes: list[TaskResult | Exception | None] = [None] * len(tasks)
    for i, task in enumerate(tasks):
        try:
            pipeline.encode_captions([task.caption])
        except Exception as exc:  # e.g. UnknownWordsError: this job only
            outcomes[i] = exc
    ready = [i for i, outcome in enumerate(outcomes) if outcome is None]
    if ready:
        live = [tasks[i] for i in ready]
        captions = [t.caption for t in live for _ in t.seeds]
        seeds = [s for t in live for s in t.seeds]
        out = pipeline(captions, num_images=1, seed=seeds, num_stages=live[0].stages,
                       return_intermediates=live[0].explain, batch_size=batch_size, truncation=live[0].truncation)
        numbers = stage_numbers(len(out.images), len(out.attention_maps))
        first = 0
        for i, task in zip(ready, live):
            try:
                outcomes[i] = _task_result(pipeline, out, task, first, numbers)
            except Exception as exc:
                outcomes[i] = exc
            first += len(task.seeds)
    return [outcome for outcome in outcomes if outcome is not None]


def _task_result(pipeline: AttnGANPipeline, out: PipelineOutput, task: Task, first: int, numbers: list[int]) -> TaskResult:
    """PNGs (and the explanation) of ``task``, whose images are ``first..`` of ``out``."""
    images = []
    for j, seed in enumerate(task.seeds):
        k = first + j
        tokens = out.captions[k].tokens
        attention = []
        if task.include_attention:
            for number, maps in zip(numbers, out.attention_maps):
                words = [(w, attention_png(maps[k, t].cpu())) for t, w in enumerate(tokens)]
                attention.append({"stage": number, "size": int(maps.shape[-1]), "words": words})
        stage_pngs = [images_to_png(stage[k:k + 1])[0] for stage in out.images]
        images.append(ImageResult(seed, stage_pngs, [int(stage.shape[-1]) for stage in out.images], attention))
    detail = _explain(pipeline, out, first) if task.explain else None
    return TaskResult(out.captions[first], images, detail, float(out.settings["truncation"]))


def _vector(values: torch.Tensor) -> dict[str, Any]:
    v = values.detach().float().cpu()
    return {"values": [round(float(x), 5) for x in v], "norm": round(float(v.norm()), 5)}


def _explain(pipeline: AttnGANPipeline, out: PipelineOutput, k: int) -> dict[str, Any]:
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
        detail["damsm"] = _damsm(encoder, out.images[-1][k:k + 1], words, inter["sentence_features"][k], tokens,
                                 pipeline.config.damsm)
    return detail


@torch.inference_mode()
def _damsm(encoder: torch.nn.Module, image: torch.Tensor, words: torch.Tensor, sentence: torch.Tensor,
           tokens: list[str], loss: DAMSMLossConfig) -> dict[str, Any]:
    """How well the DAMSM encoders think the last image matches the caption, scored with the
    smoothing factors they were trained with (``loss``: the model config's ``damsm``).

    Args:
        image: ``[1, 3, S, S]`` in [-1, 1].
        words: ``[D, T]`` word features of the caption's ``T`` tokens.
        sentence: ``[D]`` sentence feature.
    """
    device = next(encoder.parameters()).device
    regions, global_code = encoder(image.to(device).float())
    word_batch = words[None].to(device)
    lengths = torch.tensor([len(tokens)], device=device)
    score, attention = word_image_similarity(regions.float(), word_batch, lengths, loss.gamma1, loss.gamma2)
    cosine = cosine_similarity_matrix(sentence[None].to(device).float(), global_code.float())
    return {
        "available": True,
        "sentence_image_cosine": round(float(cosine[0, 0]), 5),
        "word_region_score": round(float(score[0, 0]), 5),
        "region_size": int(regions.shape[-1]),
        "words": [(w, attention_png(attention[0, t].cpu())) for t, w in enumerate(tokens)],
    }
