"""What the batch worker thread runs: several requests in one pipeline call, then PNGs.

Requests of one batch share a stage count, a truncation and a number of candidates. Their captions are repeated once per image and
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

from ..inference.explain import explain_output
from ..inference.pipeline import AttnGANPipeline, PipelineOutput
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
    candidates: int | None = None

    @property
    def key(self) -> tuple[str, int, float | None, int | None]:
        return ("explain" if self.explain else "generate", self.stages, self.truncation, self.candidates)


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
    candidates: int = 1  # the number of candidates they were chosen among


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
                       return_intermediates=live[0].explain, batch_size=batch_size, truncation=live[0].truncation,
                       candidates=live[0].candidates)
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
    return TaskResult(out.captions[first], images, detail, float(out.settings["truncation"]),
                      int(out.settings["candidates"]))


def _vector(values: torch.Tensor) -> dict[str, Any]:
    v = values.detach().float().cpu()
    return {"values": [round(float(x), 5) for x in v], "norm": round(float(v.norm()), 5)}


def _explain(pipeline: AttnGANPipeline, out: PipelineOutput, k: int) -> dict[str, Any]:
    """Image ``k``'s explanation (:func:`attngan.inference.explain.explain_output`) as the response's JSON."""
    explanation = explain_output(pipeline, out, k)
    text, conditioning, match = explanation.text, explanation.conditioning, explanation.damsm
    assert conditioning is not None  # a generated image
    words = text.word_features
    detail: dict[str, Any] = {
        "text_encoder": {
            "tokens": text.tokens,
            "word_features_png": signed_heatmap_png(words.t().numpy()),
            "word_features_shape": [len(text.tokens), int(words.shape[0])],
            "word_norms": [round(float(x), 5) for x in text.word_norms],
            "sentence": _vector(text.sentence),
        },
        "conditioning": {
            "mu": _vector(conditioning.mu),
            "sigma": _vector(conditioning.sigma),
            "condition": _vector(conditioning.condition),
            "noise_dim": conditioning.noise_dim,
        },
        "damsm": {"available": False},
    }
    if match is not None:
        detail["damsm"] = {
            "available": True,
            "sentence_image_cosine": round(match.sentence_image_cosine, 5),
            "word_region_score": round(match.word_region_score, 5),
            "region_size": match.region_size,
            "words": [(w, attention_png(match.attention[t])) for t, w in enumerate(text.tokens)],
        }
    return detail
