"""``attngan evaluate``: generate from held-out captions and score the images.

Several processes: ``torchrun --nproc_per_node N -m attngan evaluate ...`` (each process
generates a slice of the samples; rank 0 gathers, prints and writes the results).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import yaml

from .flags import message
from .group import load_pipeline, main, model_options, pipeline_options

_DATA_KINDS = ("shapes", "cub", "coco", "coco-json", "folder", "tags")


def _metric_list(value: str) -> list[str] | None:
    if value.strip().lower() in ("", "auto"):
        return None
    return [m.strip() for m in value.split(",") if m.strip()]


def _data_extra(items: tuple[str, ...]) -> dict[str, Any]:
    """``--data-option KEY=VALUE`` pairs (values read as YAML) as the data set's extra arguments."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} must look like KEY=VALUE", param_hint="--data-option")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{item!r}: {exc}", param_hint="--data-option") from None
    return out


def evaluation_classifier(spec: Any, metrics: Any, caps: Any, path: str | None, retrain: bool, device: Any,
                          rank: int, world_size: int) -> Any:
    """The attribute classifier of the metrics that need it (:func:`attngan.metrics.choose_classifier`):
    trained once into the cache, with a progress line, when none is there."""
    from ..metrics.classifier_choice import choose_classifier

    def announce(folder: Any) -> None:
        click.echo(f"training the attribute classifier on real {spec.kind} train images (once: cached in "
                   f"{folder}; 2-4 minutes on a CPU) ...", err=True)

    start = time.monotonic()
    choice = choose_classifier(spec, metrics, caps=caps, path=path, retrain=retrain, device=device, rank=rank,
                               world_size=world_size, on_train=announce)
    if choice.trained and rank == 0:
        click.echo(f"classifier trained in {time.monotonic() - start:.0f} s, saved to {choice.folder}", err=True)
    return choice


@main.command("evaluate")
@model_options()
@click.option("--data", "data_kind", type=click.Choice(_DATA_KINDS), default="shapes", show_default=True,
              help="Data set of the held-out captions and real images.")
@click.option("--data-root", type=click.Path(exists=True, file_okay=False), help="Data set folder (not for shapes).")
@click.option("--split", type=click.Choice(["validation", "test", "unseen", "train"]), default="test", show_default=True,
              help="Captions and real images: validation (tuning probes), test (final figures), unseen (shapes: "
                   "held-out shape x colour pairs), train.")
@click.option("--missing", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="CUB / COCO images the listing names but the folder lacks (a partial download): stop, or skip them.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable images (counted and logged) instead of stopping.")
@click.option("--captions-per-image", type=click.IntRange(min=1), help="Captions per image [the data set's default].")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Decoded-image cache folder (as training's).")
@click.option("--num-workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="Processes reading the data set.")
@click.option("--data-option", "data_options", multiple=True, metavar="KEY=VALUE",
              help="Further data set argument (as a training preset's data.extra), e.g. size=500; repeatable.")
@click.option("--metrics", "metrics_text", default="auto", show_default=True,
              help="Comma-separated metric names ('list' prints them; the README's Evaluate section says what "
                   "each computes) [auto: all that the model, data and given weight files allow].")
@click.option("--num-samples", type=click.IntRange(min=1),
              help="Images to generate [the papers' 30,000 for cub and coco; 1,000 otherwise].")
@click.option("--batch-size", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of sample 0's noise (sample k: seed + k), of the sample order, folds and splits.")
@click.option("--inception-weights", type=click.Path(dir_okay=False),
              help="Local pt_inception-2015-12-05-6726825d.pth (standard FID / IS).")
@click.option("--torchvision-inception-weights", type=click.Path(dir_okay=False),
              help="Local torchvision inception_v3_google-*.pth (DM-GAN / DF-GAN's PyTorch FID).")
@click.option("--birds-inception-weights", type=click.Path(dir_okay=False),
              help="Local birds-fine-tuned Inception-v3 (torchvision layout, 50 or 51 classes): the papers' CUB IS.")
@click.option("--clip-weights", type=click.Path(dir_okay=False),
              help="Local CLIP weights for clip_score / clip_r_precision: OpenAI's ViT-B-32.pt (the papers'), or a "
                   "state dict / .safetensors in open_clip's layout.")
@click.option("--clip-model", default="ViT-B-32", show_default=True,
              help="open_clip architecture of --clip-weights (a state-dict copy of OpenAI's weights: "
                   "ViT-B-32-quickgelu).")
@click.option("--classifier", "classifier_dir", type=click.Path(file_okay=False),
              help="Attribute-classifier folder [a cache folder keyed by the data settings].")
@click.option("--train-classifier", is_flag=True,
              help="Train the attribute classifier on real train images and save it (to --classifier or the cache).")
@click.option("--diversity-captions", default=50, show_default=True, type=click.IntRange(min=1),
              help="diversity: captions (the split's first), each generated with --diversity-seeds seeds.")
@click.option("--diversity-seeds", default=8, show_default=True, type=click.IntRange(min=2),
              help="diversity: images per caption, generated and real.")
@click.option("--save-images", type=click.Path(file_okay=False), help="Also write the images (PNG) and samples.jsonl.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False),
              help="Also write a report folder: report.md, samples.png, confusion-*.png, results.jsonl.")
@click.option("--out", default="results.jsonl", show_default=True, type=click.Path(dir_okay=False),
              help="JSON-lines file the results are appended to.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@pipeline_options
def evaluate_cmd(model: str | None, revision: str | None, data_kind: str, data_root: str | None, split: str,
                 missing: str, skip_bad: bool, captions_per_image: int | None, cache_dir: str | None,
                 num_workers: int, data_options: tuple[str, ...], metrics_text: str, num_samples: int | None,
                 batch_size: int, seed: int, inception_weights: str | None, torchvision_inception_weights: str | None,
                 birds_inception_weights: str | None, clip_weights: str | None, clip_model: str,
                 classifier_dir: str | None, train_classifier: bool,
                 diversity_captions: int, diversity_seeds: int, save_images: str | None, report_dir: str | None,
                 out: str, device: str, precision: str, exact: bool, backend: str, onnx_dir: str | None,
                 truncation: float | None, candidates: int | None) -> None:
    """Score a model on held-out captions as the papers do: R-precision, FID / IS, CLIP score and CLIP
    R-precision, and (shapes, tags) attribute accuracy, in-domain FD and diversity. Generates through
    the same pipeline, precision, backend and truncation as ``attngan generate``."""
    from ..data import DataSpec
    from ..metrics import EvalConfig, MissingWeightsError, append_jsonl, resolve_metrics
    from ..metrics.protocol import sample_count_warning
    from ..metrics.run import capabilities, run_evaluation
    from ..training.distributed import init_distributed, shutdown

    if metrics_text.strip().lower() == "list":
        from ..metrics import metric_names

        click.echo(" ".join(metric_names()))
        return
    try:
        dist = init_distributed(device)
    except RuntimeError as exc:
        raise click.ClickException(f"--device {device}: {exc}") from None
    try:
        try:
            spec = DataSpec(data_kind, data_root, split, captions_per_image, num_workers, cache_dir, skip_bad, missing,
                            _data_extra(data_options))
            cfg = EvalConfig(data=spec, metrics=_metric_list(metrics_text), num_samples=num_samples,
                             batch_size=batch_size, seed=seed, inception_weights=inception_weights,
                             torchvision_inception_weights=torchvision_inception_weights,
                             birds_inception_weights=birds_inception_weights, clip_weights=clip_weights,
                             clip_model=clip_model, save_images=save_images,
                             diversity_captions=diversity_captions, diversity_seeds=diversity_seeds)
        except ValueError as exc:
            raise click.ClickException(message(exc)) from None
        pipeline = load_pipeline(model, dist.device, precision, backend, onnx_dir, exact, revision, truncation,
                         candidates)
        caps = capabilities(cfg, None, pipeline.bundle.image_encoder is not None, True)
        try:
            resolve_metrics(cfg.metrics, caps)
        except MissingWeightsError as exc:
            raise click.UsageError(message(exc)) from None
        except ValueError as exc:
            raise click.ClickException(message(exc)) from None
        warning = sample_count_warning(spec.kind, cfg.sample_count)
        if warning is not None and dist.rank == 0:
            click.echo(f"warning: {warning}", err=True)
        try:
            choice = evaluation_classifier(spec, cfg.metrics, caps, classifier_dir, train_classifier, dist.device,
                                           dist.rank, dist.world_size)
        except FileNotFoundError as exc:
            raise click.ClickException(message(exc)) from None
        except ValueError as exc:
            raise click.UsageError(message(exc)) from None
        result = _run(run_evaluation, pipeline, cfg, choice.classifier, choice.info, dist)
        if result is None:
            return
        header = _header(result, pipeline, spec, cfg, dist.world_size)
        _print(result, header)
        for record in result.records:
            append_jsonl(out, record)
        click.echo(f"appended {len(result.records)} result line(s) to {out}")
        if report_dir is not None:
            from ..metrics.report import write_report

            written = write_report(report_dir, result, header)
            click.echo(f"wrote the report ({len(written)} files) to {report_dir}")
    finally:
        shutdown()


def _run(run_evaluation: Any, pipeline: Any, cfg: Any, classifier: Any, classifier_info: Any, dist: Any) -> Any:
    from tqdm import tqdm

    n = cfg.sample_count
    share = n * (dist.rank + 1) // dist.world_size - n * dist.rank // dist.world_size
    bar = tqdm(total=share, unit="image", desc="generating", file=sys.stderr, disable=dist.rank != 0,
               dynamic_ncols=True)
    try:
        return run_evaluation(pipeline, cfg, classifier, bar.update, dist.rank, dist.world_size, classifier_info)
    except (ValueError, FileNotFoundError, ImportError) as exc:  # ImportError: an extra is missing (open_clip)
        raise click.ClickException(message(exc)) from None
    finally:
        bar.close()


def _header(result: Any, pipeline: Any, spec: Any, cfg: Any, world: int) -> list[str]:
    """Lines naming the run: model, data, samples, generation settings."""
    summary, settings = result.summary, pipeline.settings
    where = f"{spec.kind}" + (f" ({spec.root})" if spec.root else "")
    path = {"reference": "the reference modules", "fast": "the fused fast path", "onnx": "ONNX Runtime"}.get(
        settings["backend"], settings["backend"])
    return [f"model {pipeline.name} ({pipeline.model_hash[:12] or 'no hash'}), data {where} {cfg.split} split; "
            f"{summary['num_samples']} generated images ({summary['num_real']} distinct real), seed {cfg.seed}"
            + (f", {world} processes" if world > 1 else ""),
            f"generated as attngan generate does: backend {settings['backend']} ({path}), {settings['precision']}, "
            f"device {settings['device']}" + (f", truncation {settings['truncation']:g}"
                                              if settings.get("truncation", 1.0) < 1.0 else "")
            + (f", best of {settings['candidates']} candidates by the model's DAMSM (R-precision on its encoders "
               "is then not an independent measure)" if settings.get("candidates", 1) > 1 else "")]


def _print(result: Any, header: list[str]) -> None:
    """The run's identity, the table, the metrics' notes and the skipped metrics."""
    from ..metrics.engine import record_notes, table_lines

    for line in [*header, *table_lines(result.records), *record_notes(result.records)]:
        click.echo(line)
    for text in result.notes:
        click.echo(f"note: {text}")
