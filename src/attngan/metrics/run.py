"""One evaluation run: generate images from a data set's held-out captions in batches and hand
each batch to every chosen metric (:mod:`attngan.metrics.engine`), then summarise and record.

Every batch is generated once, through the pipeline's tensor entry: the backend, precision and
fast path ``attngan generate`` uses, recorded as ``generation`` in every record. Sample ``k``
(the plan of :mod:`attngan.metrics.eval_data`) uses seed ``seed + k`` for its noise, so
results depend neither on the batch size nor on the number of processes. Under ``torchrun``
each process generates a contiguous slice of the samples; rank 0 gathers the per-sample
results and summarises them (other ranks get ``None``).

Reference figures computed beside the generated ones: the same metric on the real images of
the same captions (the ceiling) and, for the in-domain Fréchet distances, the distance between
those real images and as many other real images of the same distribution (the floor; a second
draw of the split for shapes, the other split otherwise: :func:`floor_source`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..data.spec import DataSpec
from ..errors import SettingError
from .engine import Capabilities, EvalConfig, EvalContext, Metric, SampleBatch, get_metric, resolve_metrics
from .eval_data import EvalSamples, build_split
from .protocol import ORDER_STREAM, PROTOCOL_SAMPLES, sample_count_warning, stream_seed
from .records import MetricRecord, make_record

if TYPE_CHECKING:
    from ..inference.pipeline import AttnGANPipeline
    from .classifier import AttributeClassifier

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass
class EvalResult:
    """``records``: one record per metric (:func:`~attngan.metrics.records.make_record`);
    ``summary``: their values in one flat dict; ``notes``: metrics skipped in automatic mode and
    why, and a warning when fewer samples than the papers' were asked for; ``details``: data
    for reports and breakdowns (``caption_texts``, ``image_indices [N]`` (the data set image of
    each sample), ``preview`` (generated and real images of the first samples), and what the
    metrics add: ``scene_hits`` / ``real_scene_hits``, ``r_hits``, ``confusion`` ...)."""

    records: list[MetricRecord]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def capabilities(cfg: EvalConfig, samples: EvalSamples | None, has_image_encoder: bool, has_classifier: bool
                 ) -> Capabilities:
    """What ``cfg``'s evaluation has (``samples`` None: judged from the data kind alone)."""
    kind = cfg.data.kind
    attributes = samples.has_attributes if samples is not None else kind in ("shapes", "tags")
    scenes = samples.has_scenes if samples is not None else kind == "shapes"
    return Capabilities(kind, has_image_encoder, attributes, scenes, has_classifier, cfg.weight_paths)


def _rank_slice(total: int, rank: int, world: int) -> range:
    return range(total * rank // world, total * (rank + 1) // world)


def run_evaluation(pipeline: AttnGANPipeline, cfg: EvalConfig, classifier: AttributeClassifier | None = None, progress: Progress | None = None,
                   rank: int = 0, world_size: int = 1, classifier_info: dict[str, Any] | None = None
                   ) -> EvalResult | None:
    """Evaluate ``pipeline`` on ``cfg.data`` (see the module doc); returns None on ranks other than 0.

    ``progress(n)`` is called after each batch of ``n`` generated images (this process's).
    Under ``torchrun`` the process group must be initialised and every rank must call this.
    """
    start_time = time.monotonic()
    bundle = pipeline.bundle
    image_size = bundle.config.generator.image_sizes[-1]
    max_words = bundle.config.text_encoder.max_words
    num_samples = cfg.sample_count
    warning = sample_count_warning(cfg.data.kind, num_samples)
    if warning is not None and rank == 0:
        logger.warning(warning)
    dataset = build_split(cfg.data, cfg.split, image_size, pipeline.vocab, max_words)
    samples = EvalSamples(dataset, num_samples, max_words, cfg.seed)
    caps = capabilities(cfg, samples, bundle.image_encoder is not None, classifier is not None)
    chosen, notes = resolve_metrics(cfg.metrics, caps)
    metrics = [get_metric(name) for name in chosen]
    needs_two = [m.name for m in metrics if m.min_real >= 2]
    if needs_two and samples.num_real < 2:
        raise SettingError("num_samples", f"Fréchet distances ({', '.join(needs_two)}) need at least 2 images")
    ctx = EvalContext(pipeline, cfg, samples, caps, classifier, classifier_info, rank, world_size,
                      floor_description=floor_source(cfg.data, cfg.split)[2])
    for metric in metrics:
        metric.setup(ctx)
    local, preview = _collect(ctx, metrics, progress)
    gathered = _gather(local, world_size)
    if gathered is None:
        return None
    engine = gathered.pop("")
    if cfg.save_images is not None:
        folder = Path(cfg.save_images)
        folder.mkdir(parents=True, exist_ok=True)
        rows = sorted(engine["rows"], key=lambda row: row["index"])
        (folder / "samples.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    details: dict[str, Any] = {"caption_texts": engine["caption_texts"], "preview": preview,
                               "image_indices": torch.cat(engine["image_indices"])}
    results = []
    for metric in metrics:
        result = metric.summarise(gathered[metric.name], ctx)
        for key, value in result.pop("details", {}).items():
            if isinstance(value, dict) and isinstance(details.get(key), dict):
                details[key].update(value)
            else:
                details[key] = value
        results.append((metric.name, result))
    seconds = time.monotonic() - start_time
    protocol = {"num_samples": num_samples, "papers_num_samples": PROTOCOL_SAMPLES.get(cfg.data.kind),
                "num_real": samples.num_real, "order": "class-stratified shuffle of the split",
                "order_seed": stream_seed(cfg.seed, ORDER_STREAM), "noise_seeds": "seed + sample index"}
    records = [make_record(name, result, seconds=seconds, model=pipeline.name, model_hash=pipeline.model_hash,
                           generation=pipeline.settings, dataset=cfg.data.describe(image_size, cfg.split),
                           seed=cfg.seed, protocol=protocol)
               for name, result in results]
    summary: dict[str, Any] = {"num_samples": num_samples, "num_real": samples.num_real}
    for record in records:
        summary.update(record["values"])
    return EvalResult(records, summary, notes + ([warning] if warning else []), details)


def _collect(ctx: EvalContext, metrics: list[Metric], progress: Progress | None
             ) -> tuple[dict[str, dict[str, list[Any]]], dict[str, Any]]:
    """This process's share: per metric, its collected lists; under ``""`` the engine's own
    (sample rows, captions, image indices); and (rank 0) the preview of the first samples."""
    cfg, samples = ctx.cfg, ctx.samples
    local: dict[str, dict[str, list[Any]]] = {m.name: defaultdict(list) for m in metrics}
    local[""] = defaultdict(list)
    preview: dict[str, Any] = {"generated": [], "real": [], "captions": []}
    mine = _rank_slice(samples.num_samples, ctx.rank, ctx.world_size)
    for fields in samples.batches(mine, cfg.batch_size, cfg.data.num_workers):
        seeds = [cfg.seed + int(k) for k in fields["indices"]]
        images = ctx.generate(fields["tokens"], fields["lengths"], seeds)
        batch = SampleBatch({**fields, "images": images, "real_first": fields["real"][fields["first_pass"]]})
        for metric in metrics:
            for key, value in (metric.collect(batch, ctx) or {}).items():
                local[metric.name][key].append(value)
        engine = local[""]
        engine["image_indices"].append(fields["image_indices"])
        engine["caption_texts"] += fields.get("caption_texts", [])
        engine["rows"] += [{"index": int(k), "key": key, "caption": text, "seed": seed, "file": f"{int(k):06d}.png"}
                           for k, key, text, seed in zip(fields["indices"], fields["keys"], fields["texts"], seeds)]
        if cfg.save_images is not None:
            _save_pngs(Path(cfg.save_images), images, fields["indices"])
        room = cfg.preview - len(preview["captions"])
        if ctx.rank == 0 and room > 0:
            preview["generated"].append(images[:room])
            preview["real"].append(fields["real"][:room])
            preview["captions"] += fields["texts"][:room]
        if progress is not None:
            progress(len(seeds))
    if ctx.floor_extractors:
        ctx.floor_features = _floor_features(ctx)
    for metric in metrics:
        for key, values in (metric.collect_once(ctx) or {}).items():
            local[metric.name][key].extend(values)
    preview = {k: torch.cat(v) if k != "captions" and v else v for k, v in preview.items()}
    return {name: dict(parts) for name, parts in local.items()}, preview


def _save_pngs(folder: Path, images: torch.Tensor, indices: torch.Tensor) -> None:
    from ..viz import to_pil

    folder.mkdir(parents=True, exist_ok=True)
    for image, k in zip(to_pil(images), indices.tolist()):
        image.save(folder / f"{k:06d}.png")


def floor_source(spec: DataSpec, split: str) -> tuple[DataSpec, dict[str, Any], str]:
    """Real images of the distribution of ``split`` other than its own: ``(spec, extra data set
    arguments, description)``; shapes: a second draw of the split (data seed 1)."""
    if spec.kind == "shapes":
        return replace(spec, split=split), {"seed": 1}, f"{split} (second draw)"
    other = "train" if split == "test" else "test"
    return replace(spec, split=other), {}, other


def _floor_features(ctx: EvalContext) -> dict[str, list[torch.Tensor]]:
    """Per requested extractor, features of this process's slice of the first ``num_real``
    floor images (:func:`floor_source`)."""
    spec, extra, _ = floor_source(ctx.cfg.data, ctx.cfg.split)
    dataset = build_split(spec, spec.split_or("test"), ctx.image_size, **extra)
    count = min(ctx.samples.num_real, len(dataset))
    mine = _rank_slice(count, ctx.rank, ctx.world_size)
    feats: dict[str, list[torch.Tensor]] = {name: [] for name in ctx.floor_extractors}
    for a in range(mine.start, mine.stop, ctx.cfg.batch_size):
        images = torch.stack([dataset[i]["images"][-1] for i in range(a, min(a + ctx.cfg.batch_size, mine.stop))])
        for name, extractor in ctx.floor_extractors.items():
            with torch.inference_mode():
                feats[name].append(extractor.features(images.float()).float().cpu())
    return feats


def _gather(local: dict[str, dict[str, list[Any]]], world: int) -> dict[str, dict[str, list[Any]]] | None:
    """Rank 0: every process's lists joined in rank order (= sample order); other ranks: None."""
    if world == 1:
        return local
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, local)
    if dist.get_rank() != 0:
        return None
    return {name: {key: [x for part in parts for x in part[name].get(key, [])]
                   for key in set().union(*(part[name] for part in parts))}
            for name in local}


def evaluate_shapes(pipeline: AttnGANPipeline, num_samples: int = 1000, seed: int = 0,
                    classifier: AttributeClassifier | str | os.PathLike[str] | None = None,
                    batch_size: int = 50, progress: Progress | None = None, split: str = "test",
                    diversity: bool = False, diversity_captions: int = 50) -> dict[str, Any]:
    """Evaluate a shapes model on the captions of ``split`` (validation, test or unseen); one flat dict.

    ``classifier``: a trained scene classifier, its folder, or None for the cached one
    (trained on real train scenes and cached on first use). Keys: the per-object figures of
    :func:`~attngan.metrics.scenes.summarise_scene_hits` (``one_*``, ``two_first_*``, ...,
    ``accuracy_all``) with their real-image ceilings ``real_*``, ``fd_classifier`` and its
    ``fd_classifier_real_floor``, with the model's image encoder ``r_precision``,
    ``r_precision_std``, ``fd_damsm``, ``fd_damsm_real_floor``, with ``diversity`` the
    ``diversity_*`` figures, and ``num_samples``, ``num_real``.
    """
    from .classifier import AttributeClassifier
    from .classifier_choice import choose_classifier
    from .eval_data import describe_classifier

    spec = DataSpec("shapes", split=split)
    metrics = ["scene_accuracy", "fd_classifier"] + (["diversity"] if diversity else [])
    if not isinstance(classifier, AttributeClassifier):
        classifier = choose_classifier(spec, metrics, path=classifier, device=pipeline.device).classifier
        assert classifier is not None  # named metrics need it: loaded or trained, else an error
    metrics += ["r_precision", "fd_damsm"] if pipeline.bundle.image_encoder is not None else []
    cfg = EvalConfig(data=spec, metrics=metrics, num_samples=num_samples, batch_size=batch_size, seed=seed,
                     diversity_captions=diversity_captions)
    result = run_evaluation(pipeline, cfg, classifier, progress, classifier_info=describe_classifier(classifier))
    assert result is not None
    return result.summary

