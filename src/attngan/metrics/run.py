"""One evaluation run: generate images from a data set's held-out captions in batches and
score them in the same pass (R-precision, attribute accuracy, in-domain FD, FID / IS).

Sample ``k`` (see :mod:`attngan.metrics.eval_data`) uses seed ``seed + k`` for its noise
and ``numpy.random.default_rng([seed, k])`` for its 99 R-precision distractors, so results
depend neither on the batch size nor on the number of processes. Under ``torchrun`` each
process scores a contiguous slice of the samples; rank 0 gathers the per-sample results
and summarises them (other ranks get ``None``).

Reference figures computed beside the generated ones: the attribute classifier's accuracy
on the real images of the same captions (the ceiling) and the in-domain Fréchet distances
between the real images of the captions and, same count, other real images of the same
distribution (the floor): a second draw of the split for shapes, the other split otherwise.

Shapes are scored per object by the slot scene classifier (:mod:`attngan.metrics.scenes`,
record ``scene_accuracy``) and, with ``diversity``, for the spread of N seeds per caption
against N real renderings of it (:mod:`attngan.metrics.diversity`; rank 0 only).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..text import pad_batch
from .classifier import AttributeClassifier, attribute_hits, summarise_attribute_hits
from .diversity import diversity_ratio, shapes_captions_and_real_sets
from .eval_data import DataSpec, EvalSamples, build_split
from .fid import FeatureStats, stats_distance
from .in_domain import ClassifierFeatures, DAMSMImageFeatures, module_fingerprint
from .inception import (
    TF_INCEPTION_ARGUMENT,
    TF_INCEPTION_FLAG,
    TF_INCEPTION_WEIGHTS_FILE,
    TORCHVISION_INCEPTION_ARGUMENT,
    TORCHVISION_INCEPTION_FLAG,
    TORCHVISION_INCEPTION_WEIGHTS_FILE,
    load_inception,
    require_weights_file,
)
from .inception_score import inception_score_from_logits
from .r_precision import CaptionPool, eval_mode, fold_summary, r_precision_from_features
from .registry import MetricContext, make_record
from .scenes import (
    SceneHits,
    is_scene_classifier,
    require_scene_classifier,
    scene_accuracy_result,
    scene_hits,
)

logger = logging.getLogger(__name__)

METRIC_NAMES = ("r_precision", "attributes", "fd_damsm", "fd_classifier", "diversity", "fid", "is", "fid_torchvision",
                "is_torchvision")
_INCEPTION_KIND = {"fid": "tf", "is": "tf", "fid_torchvision": "torchvision", "is_torchvision": "torchvision"}
Progress = Callable[[int], None]


@dataclass
class EvalConfig:
    """Settings of :func:`run_evaluation` (the ``attngan evaluate`` options)."""

    data: DataSpec = field(default_factory=DataSpec)
    metrics: Sequence[str] | None = None  # None: every metric the model, data and weight files allow
    num_samples: int = 1000
    batch_size: int = 50
    seed: int = 0
    inception_weights: str | os.PathLike[str] | None = None
    torchvision_inception_weights: str | os.PathLike[str] | None = None
    save_images: str | os.PathLike[str] | None = None
    r_distractors: int = 99
    r_folds: int = 10
    fid_method: str = "sqrtm"  # "sqrtm": the standard computation; "eigh": exact for PSD covariances, faster
    diversity_captions: int = 50  # captions of the diversity metric (the split's first ones)
    diversity_seeds: int = 8  # images per caption, generated and real


@dataclass
class EvalResult:
    """``records``: one registry record per metric; ``summary``: their values in one flat dict;
    ``notes``: metrics skipped in automatic mode and why; ``details``: per-sample results for
    breakdowns (shapes: ``scene_hits`` / ``real_scene_hits``, :class:`SceneHits` in sample
    order, the latter for the first pass, and ``caption_texts``)."""

    records: list[dict[str, Any]]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def resolve_metrics(requested: Sequence[str] | None, *, has_image_encoder: bool, has_attributes: bool,
                    has_classifier: bool, inception_weights: Any = None,
                    torchvision_inception_weights: Any = None, has_scenes: bool = True) -> tuple[list[str], list[str]]:
    """The metrics to compute and notes on those left out.

    Explicitly requested metrics that cannot run raise (``MissingWeightsError`` names the
    weights flag); with ``requested=None`` they are left out with a note. ``has_scenes``: the
    data set can render more real scenes of a caption (shapes; needed by ``diversity``).
    """
    weights = {"tf": (inception_weights, TF_INCEPTION_WEIGHTS_FILE, TF_INCEPTION_ARGUMENT, TF_INCEPTION_FLAG),
               "torchvision": (torchvision_inception_weights, TORCHVISION_INCEPTION_WEIGHTS_FILE,
                               TORCHVISION_INCEPTION_ARGUMENT, TORCHVISION_INCEPTION_FLAG)}
    names = list(METRIC_NAMES) if requested is None else list(dict.fromkeys(requested))
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"--metrics: unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRIC_NAMES)}")
    chosen, notes = [], []
    skipped: dict[str, list[str]] = {}
    for name in names:
        problem = None
        if name in ("r_precision", "fd_damsm") and not has_image_encoder:
            problem = (f"{name} needs the model folder's DAMSM image encoder (image_encoder), which this "
                       "model lacks (attngan convert --image-encoder adds it)")
        elif name in ("attributes", "fd_classifier") and not has_attributes:
            problem = f"{name} needs a data set with attributes (--data shapes or tags)"
        elif name == "diversity" and not has_scenes:
            problem = "diversity needs real renderings of a caption's scene (--data shapes)"
        elif name in ("attributes", "fd_classifier", "diversity") and not has_classifier:
            problem = f"{name} needs an attribute classifier (--classifier DIR or --train-classifier)"
        elif name in _INCEPTION_KIND:
            path, file, argument, flag = weights[_INCEPTION_KIND[name]]
            if requested is None and path is None:
                skipped.setdefault(f"pass {flag} FILE ({file}) to compute it", []).append(name)
                continue
            require_weights_file(path, file, argument, flag, "FID" if name.startswith("fid") else "Inception Score")
        if problem is not None:
            if requested is not None:
                raise ValueError(problem)
            notes.append(f"{name} skipped: {problem}")
            continue
        chosen.append(name)
    notes += [f"{', '.join(which)} skipped: {how}" for how, which in skipped.items()]
    if not chosen:
        raise ValueError("--metrics: nothing to compute; " + "; ".join(notes))
    return chosen, notes


def _rank_slice(total: int, rank: int, world: int) -> range:
    return range(total * rank // world, total * (rank + 1) // world)


def _generate_tokens(pipeline: Any, tokens: torch.Tensor, lengths: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """Final-stage images ``[B, 3, S, S]`` in [-1, 1] of token rows ``[B, T]``, image i from ``seeds[i]``,
    through the pipeline's tensor entry (its backend and precision)."""
    out = pipeline.generate_from_tokens(tokens, lengths, seeds, batch_size=len(seeds))
    return out.images[-1].clamp(-1, 1).cpu()


def _generate(pipeline: Any, batch: dict[str, Any], seed: int) -> torch.Tensor:
    """Images of a sample batch; sample k uses seed ``seed + k``."""
    return _generate_tokens(pipeline, batch["tokens"], batch["lengths"], [seed + int(k) for k in batch["indices"]])


@torch.inference_mode()
def _r_hits(image_codes: torch.Tensor, batch: dict[str, Any], text_encoder: torch.nn.Module, pool: CaptionPool,
            num_distractors: int, seed: int) -> torch.Tensor:
    """``[B]`` bool: the true caption ranks first among itself and ``num_distractors`` mismatched captions."""
    device = next(text_encoder.parameters()).device
    _, true_sent = text_encoder(batch["tokens"].to(device), batch["lengths"])
    drawn = [pool.sample_mismatched(int(c), num_distractors, np.random.default_rng([seed, int(k)]))
             for c, k in zip(batch["class_ids"], batch["indices"])]
    tokens = torch.cat([t for t, _ in drawn])
    lengths = torch.cat([n for _, n in drawn])
    width = int(lengths.max())
    _, wrong = text_encoder(tokens[:, :width].to(device), lengths)
    wrong = wrong.reshape(len(drawn), num_distractors, -1)
    return r_precision_from_features(image_codes.cpu(), true_sent.cpu(), wrong.cpu()).cpu()


def _save_pngs(folder: Path, images: torch.Tensor, indices: torch.Tensor) -> None:
    from ..viz import to_pil

    folder.mkdir(parents=True, exist_ok=True)
    for image, k in zip(to_pil(images), indices.tolist()):
        image.save(folder / f"{k:06d}.png")


def _score_slice(pipeline: Any, samples: EvalSamples, cfg: EvalConfig, metrics: list[str], rank: int, world: int,
                 pool: CaptionPool | None, damsm: DAMSMImageFeatures | None, classifier: AttributeClassifier | None,
                 inception: dict[str, Any], progress: Progress | None,
                 classifier_features: ClassifierFeatures | None = None) -> dict[str, Any]:
    """Per-sample results of this process's slice (lists of CPU tensors / rows)."""
    out: dict[str, list[Any]] = {key: [] for key in ("indices", "r_hits", "real_r_hits", "gen_attr", "real_attr",
                                                     "gen_damsm", "real_damsm", "gen_classifier", "real_classifier",
                                                     "rows", "caption_texts")}
    for kind in inception:
        out[f"gen_{kind}"], out[f"gen_{kind}_logits"], out[f"real_{kind}"] = [], [], []
    mine = _rank_slice(samples.num_samples, rank, world)
    bundle = pipeline.bundle
    for start in range(mine.start, mine.stop, cfg.batch_size):
        batch = samples.batch(range(start, min(start + cfg.batch_size, mine.stop)))
        images = _generate(pipeline, batch, cfg.seed)
        first = batch["first_pass"]
        real = batch["real"][first]
        out["indices"].append(batch["indices"])
        if damsm is not None:
            codes = damsm.features(images)
            real_codes = damsm.features(real) if real.shape[0] else None
            out["gen_damsm"].append(codes.cpu())
            if real_codes is not None:
                out["real_damsm"].append(real_codes.cpu())
            if "r_precision" in metrics:
                assert pool is not None
                with eval_mode(bundle.text_encoder):
                    out["r_hits"].append(_r_hits(codes, batch, bundle.text_encoder, pool, cfg.r_distractors, cfg.seed))
                    if real_codes is not None:
                        part = {key: batch[key][first] for key in ("tokens", "lengths", "class_ids", "indices")}
                        out["real_r_hits"].append(_r_hits(real_codes, part, bundle.text_encoder, pool,
                                                          cfg.r_distractors, cfg.seed))
        if classifier is not None and is_scene_classifier(classifier):
            out["gen_attr"].append(scene_hits(classifier, images, batch["scenes"], batch["names_background"]))
            if real.shape[0]:
                scenes = [scene for scene, f in zip(batch["scenes"], first.tolist()) if f]
                out["real_attr"].append(scene_hits(classifier, real, scenes, batch["names_background"][first]))
        elif classifier is not None:
            out["gen_attr"].append(attribute_hits(classifier, images, batch["attributes"]))
            if real.shape[0]:
                out["real_attr"].append(attribute_hits(classifier, real, batch["attributes"][first]))
        if classifier_features is not None:
            out["gen_classifier"].append(classifier_features.features(images).cpu())
            if real.shape[0]:
                out["real_classifier"].append(classifier_features.features(real).cpu())
        for kind, extractor in inception.items():
            with torch.inference_mode():
                feats, logits = extractor.features_and_logits(images)
                out[f"gen_{kind}"].append(feats.cpu())
                out[f"gen_{kind}_logits"].append(logits.cpu())
                if real.shape[0]:
                    out[f"real_{kind}"].append(extractor.features(real).cpu())
        if cfg.save_images is not None:
            _save_pngs(Path(cfg.save_images), images, batch["indices"])
        out["rows"] += [{"index": int(k), "key": key, "caption": text, "seed": cfg.seed + int(k),
                         "file": f"{int(k):06d}.png"}
                        for k, key, text in zip(batch["indices"], batch["keys"], batch["texts"])]
        out["caption_texts"] += batch.get("caption_texts", [])
        if progress is not None:
            progress(len(batch["keys"]))
    return out


def _floor_source(spec: DataSpec) -> tuple[DataSpec, dict[str, Any], str]:
    """Real images of the distribution of ``spec``'s split other than its own: ``(spec, extra
    data set arguments, description)``; shapes: a second draw of the split (data seed 1)."""
    if spec.kind == "shapes":
        return spec, {"seed": 1}, f"{spec.split} (second draw)"
    other = "train" if spec.split == "test" else "test"
    return DataSpec(spec.kind, spec.root, other), {}, other


def _floor_features(cfg: EvalConfig, extractors: dict[str, Any], image_size: int, count: int, rank: int,
                    world: int) -> dict[str, list[torch.Tensor]]:
    """Per extractor, features of this process's slice of the first ``count`` floor images (:func:`_floor_source`)."""
    if not extractors:
        return {}
    spec, extra, _ = _floor_source(cfg.data)
    dataset = build_split(spec, spec.split, image_size, **extra)
    count = min(count, len(dataset))
    mine = _rank_slice(count, rank, world)
    feats: dict[str, list[torch.Tensor]] = {name: [] for name in extractors}
    for a in range(mine.start, mine.stop, cfg.batch_size):
        images = torch.stack([dataset[i]["images"][-1] for i in range(a, min(a + cfg.batch_size, mine.stop))])
        for name, extractor in extractors.items():
            feats[name].append(extractor.features(images.float()).cpu())
    return feats


def _gather(local: dict[str, Any], world: int) -> dict[str, Any] | None:
    """Rank 0: every process's lists joined in rank order (= sample order); other ranks: None."""
    if world == 1:
        return local
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, local)
    if dist.get_rank() != 0:
        return None
    return {key: [x for part in parts for x in part[key]] for key in local}


def _stats(chunks: list[torch.Tensor], meta: dict[str, Any]) -> FeatureStats:
    x = torch.cat(chunks)
    stats = FeatureStats(x.shape[1], meta)
    stats.update(x)
    return stats


def run_evaluation(pipeline: Any, cfg: EvalConfig, classifier: AttributeClassifier | None = None,
                   progress: Progress | None = None, rank: int = 0, world_size: int = 1,
                   classifier_info: dict[str, Any] | None = None) -> EvalResult | None:
    """Evaluate ``pipeline`` on ``cfg.data`` (see the module doc); returns None on ranks other than 0.

    ``progress(n)`` is called after each batch of ``n`` generated images (this process's).
    Under ``torchrun`` the process group must be initialised and every rank must call this.
    """
    start_time = time.monotonic()
    bundle = pipeline.bundle
    image_size = bundle.config.generator.image_sizes[-1]
    max_words = bundle.config.text_encoder.max_words
    dataset = build_split(cfg.data, cfg.data.split, image_size, pipeline.vocab, max_words)
    samples = EvalSamples(dataset, cfg.num_samples, max_words)
    metrics, notes = resolve_metrics(
        cfg.metrics, has_image_encoder=bundle.image_encoder is not None, has_attributes=samples.has_attributes,
        has_classifier=classifier is not None, inception_weights=cfg.inception_weights,
        torchvision_inception_weights=cfg.torchvision_inception_weights, has_scenes=samples.has_scenes)
    if classifier is not None and samples.has_scenes and ("attributes" in metrics or "diversity" in metrics):
        require_scene_classifier(classifier, "--classifier")
    needs_two = [m for m in metrics if m in ("fd_damsm", "fd_classifier", "fid", "fid_torchvision")]
    if needs_two and samples.num_real < 2:
        raise ValueError(f"--num-samples: Fréchet distances ({', '.join(needs_two)}) need at least 2 images")
    needs_damsm = "r_precision" in metrics or "fd_damsm" in metrics
    damsm = DAMSMImageFeatures(bundle.image_encoder) if needs_damsm else None
    pool = samples.caption_pool() if "r_precision" in metrics else None
    weights = {"tf": cfg.inception_weights, "torchvision": cfg.torchvision_inception_weights}
    inception = {kind: load_inception(kind, weights[kind], pipeline.device)
                 for kind in dict.fromkeys(_INCEPTION_KIND[m] for m in metrics if m in _INCEPTION_KIND)}
    in_domain = {"fd_damsm": damsm, "fd_classifier": ClassifierFeatures(classifier) if classifier is not None else None}
    in_domain = {name: extractor for name, extractor in in_domain.items() if name in metrics and extractor is not None}
    local = _score_slice(pipeline, samples, cfg, metrics, rank, world_size, pool, damsm,
                         classifier if "attributes" in metrics else None, inception, progress,
                         in_domain.get("fd_classifier"))
    floor = _floor_features(cfg, in_domain, image_size, samples.num_real, rank, world_size)
    local.update({f"floor_{name}": floor.get(name, []) for name in ("fd_damsm", "fd_classifier")})
    gathered = _gather(local, world_size)
    if gathered is None:
        return None
    if "diversity" in metrics:
        assert classifier is not None
        gathered["diversity"] = _diversity(pipeline, cfg, classifier, image_size)
    if cfg.save_images is not None:
        folder = Path(cfg.save_images)
        folder.mkdir(parents=True, exist_ok=True)
        rows = sorted(gathered["rows"], key=lambda row: row["index"])
        (folder / "samples.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    ctx = MetricContext(dataset=cfg.data.describe(image_size), model_name=pipeline.name,
                        model_hash=pipeline.model_hash, generation=pipeline.settings, seed=cfg.seed,
                        num_samples=cfg.num_samples)
    results = _summarise(gathered, metrics, cfg, samples, damsm, classifier, inception, bundle, classifier_info)
    seconds = time.monotonic() - start_time
    records = [make_record(name, result, ctx, seconds) for name, result in results]
    summary: dict[str, Any] = {"num_samples": cfg.num_samples, "num_real": samples.num_real}
    for record in records:
        summary.update(record["values"])
    details: dict[str, Any] = {"caption_texts": gathered["caption_texts"]}
    if gathered["gen_attr"] and isinstance(gathered["gen_attr"][0], SceneHits):
        details.update(scene_hits=SceneHits.cat(gathered["gen_attr"]), real_scene_hits=SceneHits.cat(gathered["real_attr"]))
    return EvalResult(records, summary, notes, details)


def _summarise(g: dict[str, Any], metrics: list[str], cfg: EvalConfig, samples: EvalSamples,
               damsm: DAMSMImageFeatures | None, classifier: AttributeClassifier | None, inception: dict[str, Any],
               bundle: Any, classifier_info: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """``(metric name, registry result)`` pairs from the gathered per-sample results."""
    n = sum(int(ix.numel()) for ix in g["indices"])
    out: list[tuple[str, dict[str, Any]]] = []
    if "r_precision" in metrics:
        hits, real_hits = torch.cat(g["r_hits"]), torch.cat(g["real_r_hits"])
        folds = min(cfg.r_folds, hits.numel())
        mean, std = fold_summary(hits, folds)
        real_mean, real_std = fold_summary(real_hits, min(folds, real_hits.numel()))
        assert damsm is not None
        text_id = f"DAMSM text encoder ({type(bundle.text_encoder).__name__}), weights sha256:" \
                  f"{module_fingerprint(bundle.text_encoder)}"
        out.append(("r_precision", {
            "values": {"r_precision": mean, "r_precision_std": std, "real_r_precision": real_mean,
                       "real_r_precision_std": real_std},
            "label": f"R-precision (true caption + {cfg.r_distractors} mismatched, DAMSM encoders, {folds} folds; "
                     "real_*: the real images of the captions)",
            "feature_extractor": damsm.identity, "num_samples": n, "num_distractors": cfg.r_distractors,
            "num_folds": folds, "text_encoder": text_id, "image_encoder": damsm.identity}))
    if "attributes" in metrics:
        assert classifier is not None
        out.append(_attribute_result(g, classifier, n, samples.num_real, classifier_info))
    for name in ("fd_damsm", "fd_classifier"):
        if name in metrics:
            out.append((name, _in_domain_result(g, name, cfg, damsm, classifier, n)))
    if "diversity" in metrics:
        assert classifier is not None
        figures = g["diversity"]
        out.append(("diversity", {"values": figures, "num_samples": figures["num_captions"] * figures["num_seeds"],
                                  "feature_extractor": ClassifierFeatures(classifier).identity,
                                  "label": f"mean pairwise distance of {cfg.diversity_seeds} seeds per caption "
                                           "over that of as many real renderings of its scene (classifier "
                                           "features; diversity_pixels_*: 32x32 pixels)",
                                  "split": cfg.data.split}))
    for name in ("fid", "fid_torchvision"):
        if name in metrics:
            kind, extractor = _INCEPTION_KIND[name], inception[_INCEPTION_KIND[name]]
            meta = {"extractor": extractor.identity}
            value = stats_distance(_stats(g[f"gen_{kind}"], meta), _stats(g[f"real_{kind}"], meta), cfg.fid_method)
            out.append((name, {"values": {name: value}, "label": extractor.fid_label,
                               "feature_extractor": extractor.identity, "num_samples": n,
                               "num_reference": samples.num_real}))
    for name in ("is", "is_torchvision"):
        if name in metrics:
            kind, extractor = _INCEPTION_KIND[name], inception[_INCEPTION_KIND[name]]
            splits = min(10, n)
            mean, std = inception_score_from_logits(torch.cat(g[f"gen_{kind}_logits"]), splits)
            out.append((name, {"values": {name: mean, f"{name}_std": std}, "label": extractor.is_label,
                               "feature_extractor": extractor.identity, "num_samples": n, "splits": splits}))
    return out


def _attribute_result(g: dict[str, Any], classifier: AttributeClassifier, n: int, num_real: int,
                      classifier_info: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """``scene_accuracy`` (slot scene classifier, shapes) or ``attribute_accuracy``, with ``real_*`` ceilings."""
    extra = {"num_real": num_real, "classifier": classifier_info or {}}
    if is_scene_classifier(classifier):
        return "scene_accuracy", {**scene_accuracy_result(classifier, SceneHits.cat(g["gen_attr"]),
                                                          SceneHits.cat(g["real_attr"])), **extra}
    names = classifier.config.attribute_names
    values = summarise_attribute_hits(torch.cat(g["gen_attr"]), names)
    values.update({f"real_{k}": v for k, v in summarise_attribute_hits(torch.cat(g["real_attr"]), names).items()})
    return "attribute_accuracy", {
        "values": values, "label": "attribute accuracy of generated images (real_*: the same classifier on the real "
                                   "images of the captions, the ceiling)",
        "feature_extractor": f"attribute classifier {list(names)}", "num_samples": n, **extra}


def _in_domain_result(g: dict[str, Any], name: str, cfg: EvalConfig, damsm: DAMSMImageFeatures | None,
                      classifier: AttributeClassifier | None, n: int) -> dict[str, Any]:
    """The in-domain Fréchet distance ``name`` (``fd_damsm`` / ``fd_classifier``) and its real floor."""
    extractor: Any = damsm if name == "fd_damsm" else ClassifierFeatures(classifier)  # type: ignore[arg-type]
    key = name.removeprefix("fd_")
    meta = {"extractor": extractor.identity}
    gen, real = _stats(g[f"gen_{key}"], meta), _stats(g[f"real_{key}"], meta)
    values = {name: stats_distance(gen, real, method="eigh")}
    floor = g[f"floor_{name}"]
    if sum(f.shape[0] for f in floor) >= 2:
        values[f"{name}_real_floor"] = stats_distance(_stats(floor, meta), real, method="eigh")
    described = _floor_source(cfg.data)[2]
    return {"values": values, "label": f"{extractor.fid_label}; floor: real {described} vs real {cfg.data.split} "
                                       "images of the same count", "feature_extractor": extractor.identity,
            "num_samples": n, "num_reference": real.num_samples, "num_floor": sum(int(f.shape[0]) for f in floor),
            "floor_split": described}


def _diversity(pipeline: Any, cfg: EvalConfig, classifier: AttributeClassifier, image_size: int) -> dict[str, Any]:
    """:func:`~attngan.metrics.diversity.diversity_ratio` on the first captions of the split, as this
    evaluation generates (caption j: seeds ``seed + 8 j ...``)."""
    captions, reals = shapes_captions_and_real_sets(cfg.data.split, cfg.diversity_captions, cfg.diversity_seeds,
                                                    image_size)

    def generate(texts: list[str], seeds: list[int]) -> torch.Tensor:
        return _generate_tokens(pipeline, *pad_batch([e.ids for e in pipeline.encode_captions(texts)]), seeds)

    features = ClassifierFeatures(classifier).features
    return diversity_ratio(generate, captions, reals, features, cfg.diversity_seeds, cfg.seed)


def evaluate_shapes(pipeline: Any, num_samples: int = 1000, seed: int = 0,
                    classifier: AttributeClassifier | str | os.PathLike[str] | None = None, batch_size: int = 50,
                    progress: Progress | None = None, split: str = "test", diversity: bool = False,
                    diversity_captions: int = 50) -> dict[str, Any]:
    """Evaluate a shapes model on the captions of ``split`` (validation, test or unseen); one flat dict.

    ``classifier``: a trained scene classifier, its folder, or None for the cached one
    (trained on real train scenes and cached on first use). Keys: the per-object figures of
    :func:`~attngan.metrics.scenes.summarise_scene_hits` (``one_*``, ``two_first_*``, ...,
    ``accuracy_all``) with their real-image ceilings ``real_*``, ``fd_classifier`` and its
    ``fd_classifier_real_floor``, with the model's image encoder ``r_precision``,
    ``r_precision_std``, ``fd_damsm``, ``fd_damsm_real_floor``, with ``diversity`` the
    ``diversity_*`` figures, and ``num_samples``, ``num_real``.
    """
    from .classifier import load_classifier
    from .eval_data import data_classifier, describe_classifier

    spec = DataSpec("shapes", split=split)
    if classifier is None:
        try:
            classifier, _ = data_classifier(spec, device=pipeline.device)
        except FileNotFoundError:
            classifier, _ = data_classifier(spec, train=True, device=pipeline.device)
    elif not isinstance(classifier, AttributeClassifier):
        classifier = load_classifier(classifier, pipeline.device)
    metrics = ["attributes", "fd_classifier"] + (["diversity"] if diversity else [])
    metrics += ["r_precision", "fd_damsm"] if pipeline.bundle.image_encoder is not None else []
    cfg = EvalConfig(data=spec, metrics=metrics, num_samples=num_samples, batch_size=batch_size, seed=seed,
                     diversity_captions=diversity_captions)
    result = run_evaluation(pipeline, cfg, classifier, progress, classifier_info=describe_classifier(classifier))
    assert result is not None
    return result.summary
