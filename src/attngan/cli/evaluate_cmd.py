"""``attngan evaluate``: generate from held-out captions and score the images.

Several processes: ``torchrun --nproc_per_node N -m attngan evaluate ...`` (each process
generates a slice of the samples; rank 0 gathers, prints and writes the results).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from .group import main, model_options

_METRICS_HELP = ("Comma-separated: r_precision, attributes, fd_damsm, fd_classifier, diversity, fid, is, "
                 "fid_torchvision, is_torchvision [auto: all that the model, data and given weight files allow].")
_CLASSIFIER_METRICS = ("attributes", "fd_classifier", "diversity")


def _metric_list(value: str) -> list[str] | None:
    if value.strip().lower() in ("", "auto"):
        return None
    return [m.strip() for m in value.split(",") if m.strip()]


def _classifier(spec: Any, metrics: list[str] | None, path: str | None, train: bool, device: Any,
                rank: int) -> tuple[Any, dict[str, Any] | None, str | None]:
    """``(classifier or None, description, note)`` for the attribute metric."""
    from ..metrics.eval_data import CLASSIFIER_RECIPES, data_classifier, describe_classifier
    from ..training.distributed import barrier

    wanted = ([m for m in metrics if m in _CLASSIFIER_METRICS] if metrics is not None
              else list(_CLASSIFIER_METRICS) if spec.kind in CLASSIFIER_RECIPES else [])
    if not wanted:
        if train or path:
            raise click.UsageError("--train-classifier / --classifier: no metric that needs the attribute classifier "
                                   f"is computed for --data {spec.kind} with these --metrics")
        return None, None, None
    if spec.kind not in CLASSIFIER_RECIPES:
        raise click.UsageError(f"--metrics {wanted[0]}: --data {spec.kind} has no attributes (use shapes or tags)")
    if train:
        if rank == 0:
            start = time.monotonic()
            click.echo(f"training the attribute classifier on real {spec.kind} train images ...", err=True)
            classifier, folder = data_classifier(spec, path, train=True, device=device)
            click.echo(f"classifier trained in {time.monotonic() - start:.0f} s, saved to {folder}", err=True)
        barrier()
        if rank != 0:
            classifier, folder = data_classifier(spec, path, device=device)
        return classifier, describe_classifier(classifier, folder), None
    try:
        classifier, folder = data_classifier(spec, path, device=device)
    except FileNotFoundError as exc:
        if metrics is not None or path is not None:
            raise click.ClickException(str(exc)) from None
        return None, None, f"{', '.join(wanted)} skipped: {exc}"
    return classifier, describe_classifier(classifier, folder), None


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if value == 0 or 0.01 <= abs(value) < 1e5 else f"{value:.4g}"


def result_table(records: list[dict[str, Any]]) -> list[str]:
    """Lines of a small table: metric, generated value, real-image reference."""
    rows: list[tuple[str, str, str]] = []
    for record in records:
        values, name = record["values"], record["metric"]
        if name == "r_precision":
            real = values.get("real_r_precision")
            rows.append((f"R-precision ({record['extra']['num_folds']} folds)",
                         f"{values['r_precision']:.4f} ± {values['r_precision_std']:.4f}",
                         f"{real:.4f} ± {values['real_r_precision_std']:.4f}" if real is not None else ""))
        elif name == "attribute_accuracy":
            for key in [k for k in values if k.startswith("accuracy_")]:
                real = values.get("real_" + key)
                rows.append((f"accuracy {key[len('accuracy_'):]}", f"{values[key]:.4f}",
                             f"{real:.4f} (real ceiling)" if real is not None else ""))
        elif name == "scene_accuracy":
            real = values.get("real_accuracy_all")
            rows.append(("all attributes, every caption (table below)", f"{values['accuracy_all']:.4f}",
                         f"{real:.4f} (real ceiling)" if real is not None else ""))
        elif name in ("fd_damsm", "fd_classifier"):
            floor = values.get(f"{name}_real_floor")
            rows.append((f"in-domain FD ({'DAMSM' if name == 'fd_damsm' else 'classifier'})", _fmt(values[name]),
                         f"{_fmt(floor)} (real {record['extra']['floor_split']} vs "
                         f"{record['dataset']['split']} floor)" if floor is not None else ""))
        elif name == "diversity":
            rows.append((f"diversity, {values['num_seeds']} seeds x {values['num_captions']} captions",
                         f"{values['diversity_generated']:.4f}",
                         f"{values['diversity_real']:.4f} (real); ratio {values['diversity_ratio']:.3f}, "
                         f"pixels {values['diversity_pixels_ratio']:.3f}"))
        elif name in ("fid", "fid_torchvision"):
            rows.append(("FID" if name == "fid" else "PyTorch FID (torchvision)", _fmt(values[name]), ""))
        else:
            rows.append(("IS" if name == "is" else "IS (torchvision)",
                         f"{values[name]:.4f} ± {values[name + '_std']:.4f}", ""))
    width = max([len(r[0]) for r in rows] + [6])
    lines = [f"{'metric':<{width}}  {'generated':<18}  real images"]
    lines += [f"{a:<{width}}  {b:<18}  {c}".rstrip() for a, b, c in rows]
    return lines


@main.command("evaluate")
@model_options()
@click.option("--data", "data_kind", type=click.Choice(["shapes", "cub", "coco", "folder", "tags"]),
              default="shapes", show_default=True, help="Data set of the held-out captions and real images.")
@click.option("--data-root", type=click.Path(exists=True, file_okay=False), help="Data set folder (not for shapes).")
@click.option("--split", type=click.Choice(["validation", "test", "unseen", "train"]), default="test", show_default=True,
              help="Captions and real images: validation (tuning probes), test (final figures), unseen (shapes: "
                   "held-out shape x colour pairs), train.")
@click.option("--metrics", "metrics_text", default="auto", show_default=True, help=_METRICS_HELP)
@click.option("--num-samples", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Images to generate (sample k: image k mod N of the split, seed + k).")
@click.option("--batch-size", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of sample 0.")
@click.option("--inception-weights", type=click.Path(dir_okay=False),
              help="Local pt_inception-2015-12-05-6726825d.pth (standard FID / IS).")
@click.option("--torchvision-inception-weights", type=click.Path(dir_okay=False),
              help="Local torchvision inception_v3_google-*.pth (PyTorch FID / IS).")
@click.option("--classifier", "classifier_dir", type=click.Path(file_okay=False),
              help="Attribute-classifier folder [a cache folder keyed by the data settings].")
@click.option("--train-classifier", is_flag=True,
              help="Train the attribute classifier on real train images and save it (to --classifier or the cache).")
@click.option("--diversity-captions", default=50, show_default=True, type=click.IntRange(min=1),
              help="diversity: captions (the split's first), each generated with --diversity-seeds seeds.")
@click.option("--diversity-seeds", default=8, show_default=True, type=click.IntRange(min=2),
              help="diversity: images per caption, generated and real.")
@click.option("--save-images", type=click.Path(file_okay=False), help="Also write the images (PNG) and samples.jsonl.")
@click.option("--out", default="results.jsonl", show_default=True, type=click.Path(dir_okay=False),
              help="JSON-lines file the results are appended to.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def evaluate_cmd(model: str | None, revision: str | None, data_kind: str, data_root: str | None, split: str,
                 metrics_text: str, num_samples: int, batch_size: int, seed: int, inception_weights: str | None,
                 torchvision_inception_weights: str | None, classifier_dir: str | None, train_classifier: bool,
                 diversity_captions: int, diversity_seeds: int, save_images: str | None, out: str,
                 device: str) -> None:
    """Score a model on held-out captions: R-precision, attribute accuracy (per object for shapes),
    in-domain FD, diversity, FID / IS."""
    from ..inference.pipeline import AttnGANPipeline
    from ..metrics import MissingWeightsError, append_jsonl
    from ..metrics.eval_data import DataSpec
    from ..metrics.run import EvalConfig, resolve_metrics, run_evaluation
    from ..training.distributed import init_distributed, shutdown

    try:
        dist = init_distributed(device)
    except RuntimeError as exc:
        raise click.ClickException(f"--device {device}: {exc}") from None
    try:
        try:
            spec = DataSpec(data_kind, data_root, split)
            metrics = _metric_list(metrics_text)
            pipeline = AttnGANPipeline.from_pretrained(model, device=dist.device, revision=revision)
            resolve_metrics(metrics, has_image_encoder=pipeline.bundle.image_encoder is not None,
                            has_attributes=True, has_classifier=True, inception_weights=inception_weights,
                            torchvision_inception_weights=torchvision_inception_weights)
        except MissingWeightsError as exc:
            raise click.UsageError(str(exc)) from None
        except (ValueError, FileNotFoundError) as exc:
            hint = "; pass --model PATH" if model is None and isinstance(exc, FileNotFoundError) else ""
            raise click.ClickException(f"{exc}{hint}") from None
        classifier, classifier_info, note = _classifier(spec, metrics, classifier_dir, train_classifier,
                                                        dist.device, dist.rank)
        cfg = EvalConfig(data=spec, metrics=metrics, num_samples=num_samples, batch_size=batch_size, seed=seed,
                         inception_weights=inception_weights,
                         torchvision_inception_weights=torchvision_inception_weights, save_images=save_images,
                         diversity_captions=diversity_captions, diversity_seeds=diversity_seeds)
        result = _run(run_evaluation, pipeline, cfg, classifier, classifier_info, dist)
        if result is None:
            return
        _report(result, pipeline, spec, cfg, note, dist.world_size)
        for record in result.records:
            append_jsonl(out, record)
        click.echo(f"appended {len(result.records)} result line(s) to {out}")
    finally:
        shutdown()


def _run(run_evaluation: Any, pipeline: Any, cfg: Any, classifier: Any, classifier_info: Any, dist: Any) -> Any:
    from tqdm import tqdm

    share = cfg.num_samples * (dist.rank + 1) // dist.world_size - cfg.num_samples * dist.rank // dist.world_size
    bar = tqdm(total=share, unit="image", desc="generating", file=sys.stderr, disable=dist.rank != 0,
               dynamic_ncols=True)
    try:
        return run_evaluation(pipeline, cfg, classifier, bar.update, dist.rank, dist.world_size, classifier_info)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()


def _report(result: Any, pipeline: Any, spec: Any, cfg: Any, note: str | None, world: int) -> None:
    """Print the run's identity, the encoders used and the table."""
    summary = result.summary
    where = f"{spec.kind}" + (f" ({spec.root})" if spec.root else "")
    click.echo(f"model {pipeline.name} ({pipeline.model_hash[:12] or 'no hash'}), data {where} {spec.split} split; "
               f"{summary['num_samples']} generated images ({summary['num_real']} distinct real), seed {cfg.seed}"
               + (f", {world} processes" if world > 1 else ""))
    for record in result.records:
        if record["metric"] == "r_precision":
            extra = record["extra"]
            click.echo(f"R-precision over {record['num_samples']} images, true caption + "
                       f"{extra['num_distractors']} mismatched captions, mean ± std over {extra['num_folds']} folds")
            click.echo(f"  text encoder:  {extra['text_encoder']}")
            click.echo(f"  image encoder: {extra['image_encoder']}")
    for line in result_table(result.records):
        click.echo(line)
    for record in result.records:
        if record["metric"] == "scene_accuracy":
            from ..metrics.scenes import scene_table

            click.echo(f"per-object accuracy on the {spec.split} split (gen: generated images; real: the captions' "
                       "real images, the ceiling; background scored where the caption names it)")
            for line in scene_table(record["values"]):
                click.echo(line)
    skipped = note.split(" skipped")[0].split(", ") if note else []
    notes = [n for n in result.notes if not any(n.startswith(f"{m} skipped") for m in skipped)]
    for text in notes + ([note] if note else []):
        click.echo(f"note: {text}")
