"""``attngan tune-truncation``: choose a model's default truncation on validation captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .evaluate_cmd import evaluation_classifier
from .flags import message
from .group import candidates_option, load_pipeline, main, model_options

_DATA_KINDS = {"shapes": "scene_accuracy", "tags": "attribute_accuracy"}  # kinds whose classifier scores accuracy_all


def _values(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} must be comma-separated numbers in (0, 1]", param_hint="--values") from None
    bad = [v for v in values if not 0.0 < v <= 1.0]
    if not values or bad:
        raise click.BadParameter(f"{text!r}: every value must be in (0, 1]", param_hint="--values")
    return sorted(set(values), reverse=True)


def _counts(text: str) -> list[int]:
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} must be comma-separated integers >= 1",
                                 param_hint="--candidate-values") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"{text!r}: every number of candidates must be >= 1", param_hint="--candidate-values")
    return sorted(set(counts))


@main.command("tune-truncation")
@model_options()
@click.option("--data", "data_kind", type=click.Choice(sorted(_DATA_KINDS)), default="shapes", show_default=True,
              help="Data set whose attribute classifier scores the captions.")
@click.option("--data-root", type=click.Path(exists=True, file_okay=False), help="Data set folder (tags).")
@click.option("--split", type=click.Choice(["validation", "test", "unseen"]), default="validation", show_default=True,
              help="Captions to tune on (validation: the test split's figures stay honest).")
@click.option("--values", "values_text", default="1.0,0.8,0.7,0.6,0.5,0.4", show_default=True,
              help="Truncations to try, comma-separated, each in (0, 1].")
@click.option("--min-diversity", default=0.6, show_default=True, type=click.FloatRange(min=0),
              help="The lowest diversity ratio a chosen truncation may give (generated spread / real spread).")
@click.option("--num-samples", default=1000, show_default=True, type=click.IntRange(min=2), help="Captions scored.")
@click.option("--batch-size", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of sample 0's noise and of the sample order (the same for every truncation).")
@click.option("--classifier", "classifier_dir", type=click.Path(file_okay=False),
              help="Attribute-classifier folder [a cache folder keyed by the data settings].")
@click.option("--train-classifier", is_flag=True, help="Train the attribute classifier anew first.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
@candidates_option
@click.option("--candidate-values", "candidate_values_text", metavar="K,K,...",
              help="Try each of these numbers of candidates (best of K), each at every --values truncation; the "
                   "smallest K whose best accuracy is within --candidate-margin of the best K's is chosen.")
@click.option("--candidate-margin", default=0.01, show_default=True, type=click.FloatRange(min=0),
              help="How much accuracy more candidates must add to be chosen (about the noise of the measurement).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--out", default="results.jsonl", show_default=True, type=click.Path(dir_okay=False),
              help="JSON-lines file every evaluation's records are appended to.")
@click.option("--write", is_flag=True,
              help="Store the chosen value as the model's own default (metadata.truncation in the --model folder's "
                   "config.json), and with --candidates or --candidate-values the candidates it was chosen at "
                   "(metadata.candidates).")
def tune_truncation_cmd(model: str | None, revision: str | None, data_kind: str, data_root: str | None, split: str,
                        values_text: str, min_diversity: float, num_samples: int, batch_size: int, seed: int,
                        classifier_dir: str | None, train_classifier: bool, precision: str, candidates: int | None,
                        candidate_values_text: str | None, candidate_margin: float, device: str, out: str,
                        write: bool) -> None:
    """Score the model at each truncation of --values on held-out captions (every attribute right, and
    the diversity ratio) and choose, by a rule fixed in advance, the value that gets the most captions
    right while the diversity ratio stays at least --min-diversity; --write stores it with the model,
    so that generate, evaluate, serve and the web page use it unless told otherwise."""
    from ..data import DataSpec
    from ..hub import CANDIDATES_KEY, TRUNCATION_KEY, update_metadata
    from ..metrics import EvalConfig, append_jsonl
    from ..metrics.run import capabilities
    from ..metrics.truncation_choice import choose_sampling, sweep_truncation

    values = _values(values_text)
    if candidate_values_text is not None and candidates is not None:
        raise click.UsageError("give --candidates K or --candidate-values K,K,..., not both")
    counts = _counts(candidate_values_text) if candidate_values_text is not None else None
    folder = _writable_folder(model) if write else None
    try:
        spec = DataSpec(data_kind, data_root, split)
        cfg = EvalConfig(data=spec, metrics=[_DATA_KINDS[data_kind], "diversity"], num_samples=num_samples,
                         batch_size=batch_size, seed=seed)
    except ValueError as exc:
        raise click.ClickException(message(exc)) from None
    pipeline = load_pipeline(model, device, precision, "fast", None, revision=revision,
                             candidates=candidates if counts is None else max(counts))  # checks the encoder
    caps = capabilities(cfg, None, pipeline.bundle.image_encoder is not None, True)
    try:
        choice = evaluation_classifier(spec, cfg.metrics, caps, classifier_dir, train_classifier, device, 0, 1)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(message(exc)) from None
    click.echo(f"model {pipeline.name} ({pipeline.model_hash[:12] or 'no hash'}), {data_kind} {split} split, "
               f"{num_samples} captions, seed {seed}; its own truncation {pipeline.truncation:g}"
               + (f"; best of {pipeline.candidates} candidates" if counts is None and pipeline.candidates > 1 else ""))

    def report(trial: Any, result: Any) -> None:
        click.echo((f"candidates {trial.candidates:<3d} " if counts is not None else "")
                   + f"truncation {trial.truncation:<5g} every attribute right {trial.accuracy:.3f}   "
                   f"diversity ratio {trial.diversity:.3f}")
        for record in result.records:
            append_jsonl(out, record)

    trials = []
    try:
        for count in counts or [pipeline.candidates]:
            pipeline.candidates = count
            trials += sweep_truncation(pipeline, cfg, choice.classifier, values, _DATA_KINDS[data_kind], report)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(message(exc)) from None
    click.echo(f"appended {sum(len(r.records) for _, r in trials)} result line(s) to {out}")
    best = choose_sampling([t for t, _ in trials], min_diversity, candidate_margin)
    if best is None:
        raise click.ClickException(f"no value tried keeps the diversity ratio at {min_diversity:g} or more; "
                                   "nothing chosen (try larger values, or a lower --min-diversity)")
    click.echo(f"chosen: truncation {best.truncation:g}" + (f", candidates {best.candidates}" if counts else "")
               + f" (every attribute right {best.accuracy:.3f}, diversity ratio {best.diversity:.3f})")
    if folder is not None:
        updates: dict[str, Any] = {TRUNCATION_KEY: best.truncation}
        if candidates is not None or counts is not None:
            updates[CANDIDATES_KEY] = best.candidates
        file = update_metadata(folder, updates)
        click.echo(", ".join(f"wrote metadata.{k} = {v:g}" for k, v in updates.items()) + f" to {file}")


def _writable_folder(model: str | None) -> Path:
    """The local model folder --write may change: never the bundled model or a Hub snapshot."""
    from ..hub import CONFIG_NAME

    if model is None:
        raise click.UsageError("--write changes a model folder: name it with --model PATH (the bundled model is "
                               "read-only)")
    folder = Path(model)
    if not (folder / CONFIG_NAME).is_file():
        raise click.UsageError(f"--write needs --model to be a local model folder; {model} has no {CONFIG_NAME}")
    return folder
