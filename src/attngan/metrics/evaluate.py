"""Evaluate a model: generate one image per caption of a data set's batches and compute metrics.

A thin layer over :class:`~attngan.metrics.registry.MetricContext`: the generated batches
keep the caption batch's fields (``tokens``, ``lengths``, ``class_ids``, ``attributes``,
``keys``) with ``images`` replaced by the generated per-stage images. Image ``k`` (in batch
order) uses seed ``seed + k``, drawn as the pipeline draws them, so results are reproducible
and independent of the batch size. Metrics that do not share features (R-precision,
attribute accuracy) generate the images again; FID and IS on the same network share one pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

from .registry import MetricContext, MetricRegistry, evaluate, final_images


def generated_from_pipeline(pipeline: Any, caption_batches: Callable[[], Iterable[Mapping[str, Any]]],
                            seed: int = 0) -> Callable[[], Iterator[dict[str, Any]]]:
    """A re-iterable source of generated batches for :class:`MetricContext.generated`.

    Args:
        pipeline: an ``AttnGANPipeline`` (its tensor entry, so its backend and precision).
        caption_batches: returns fresh batches in the data sets' collate format
            (``tokens [B, T]``, ``lengths [B]``, ``class_ids [B]``, ...).
        seed: seed of the first image.
    """
    def run() -> Iterator[dict[str, Any]]:
        done = 0
        for batch in caption_batches():
            count = batch["tokens"].shape[0]
            seeds = list(range(seed + done, seed + done + count))
            out = pipeline.generate_from_tokens(batch["tokens"], batch["lengths"], seeds, batch_size=count)
            done += count
            yield {**batch, "images": out.images, "seeds": seeds}

    return run


def evaluate_model(
    pipeline: Any,
    caption_batches: Callable[[], Iterable[Mapping[str, Any]]],
    metrics: Sequence[str],
    *,
    real_images: Callable[[], Iterable[Any]] | None = None,
    dataset: str | dict[str, Any] = "",
    seed: int = 0,
    num_samples: int | None = None,
    jsonl_path: str | os.PathLike[str] | None = None,
    registry: MetricRegistry | None = None,
    **context: Any,
) -> list[dict[str, Any]]:
    """Compute ``metrics`` for a pipeline's images generated from ``caption_batches``.

    ``real_images`` defaults to the last-stage images of ``caption_batches`` (the real set
    the captions come from). The DAMSM encoders default to the bundle's text encoder and
    image encoder. Further ``MetricContext`` fields (``inception_weights``, ``captions``,
    ``classifier``, ``cache_dir``, ``options``, ...) pass through ``context``. Each record
    is appended to ``jsonl_path`` when given.
    """
    bundle = pipeline.bundle

    def real_from_captions() -> Iterator[torch.Tensor]:
        return (final_images(batch) for batch in caption_batches())

    ctx = MetricContext(
        generated=generated_from_pipeline(pipeline, caption_batches, seed),
        real_images=real_images if real_images is not None else real_from_captions,
        dataset=dataset,
        model_name=pipeline.name,
        model_hash=pipeline.model_hash,
        generation=pipeline.settings,
        seed=seed,
        num_samples=num_samples,
        text_encoder=context.pop("text_encoder", bundle.text_encoder),
        image_encoder=context.pop("image_encoder", bundle.image_encoder),
        device=context.pop("device", pipeline.device),
        **context,
    )
    return evaluate(metrics, ctx, jsonl_path, registry)
