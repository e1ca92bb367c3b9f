"""``attngan train-damsm`` and ``attngan train``: presets + ``--set key=value`` overrides;
``attngan train --data-root DIR``: a folder of captioned images to a model in one run."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .flags import message
from .group import main

if TYPE_CHECKING:
    from ..training.options import DAMSMTrainConfig, GANTrainConfig

_SET_HELP = "Override a preset value, e.g. --set run.max_steps=100 --set data.root=data/birds (repeatable)."


def _resolve(kind: str, preset: str, overrides: tuple[str, ...], out: str | None
             ) -> DAMSMTrainConfig | GANTrainConfig:
    from ..config import ConfigError
    from ..training.options import resolve_config

    items = list(overrides)
    if out:
        items.append(f"run.out_dir={out}")
    try:
        return resolve_config(kind, preset, items)
    except (ConfigError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from None


def _run(fn: Callable[..., Path], cfg: DAMSMTrainConfig | GANTrainConfig, resume: bool) -> None:
    from ..files import OutputError
    from ..training.checkpoint import CheckpointError

    try:
        path = fn(cfg, resume=resume)
    except (CheckpointError, OutputError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    if os.environ.get("RANK", "0") == "0":  # once, not once per process under torchrun
        click.echo(f"exported {path}")


@main.command("train-damsm")
@click.option("--preset", default="shapes", show_default=True, help="Preset name or YAML file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--out", help="Run folder (same as --set run.out_dir=...).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run folder.")
def train_damsm_cmd(preset: str, overrides: tuple[str, ...], out: str | None, resume: bool) -> None:
    """Pretrain the DAMSM text and image encoders (writes <out>/damsm)."""
    from ..training.damsm import train_damsm

    _run(train_damsm, _resolve("damsm", preset, overrides, out), resume)


@main.command("train")
@click.option("--preset", help="Preset name or YAML file [shapes; with --data-root: folder_cpu (64 px), or "
                               "folder_gpu (256 px) where a CUDA device is found].")
@click.option("--data-root", type=click.Path(exists=True, file_okay=False),
              help="Train on this data (a folder of captioned images with the folder presets) in one resumable "
                   "run: the data checked, DAMSM encoders (unless --damsm names some), then the GAN.")
@click.option("--damsm", help="DAMSM folder from train-damsm (same as --set damsm=...).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help=_SET_HELP + " With --data-root a key goes to every phase that has it; damsm.KEY / gan.KEY "
                               "choose one.")
@click.option("--out", help="Run folder (same as --set run.out_dir=...) [with --data-root: runs/<its name>].")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run folder.")
def train_cmd(preset: str | None, data_root: str | None, damsm: str | None, overrides: tuple[str, ...],
              out: str | None, resume: bool) -> None:
    """Train the AttnGAN generator and discriminators (writes <out>/model).

    With --data-root: the DAMSM encoders first, then the GAN, in one folder (see the README).
    Several processes: torchrun --nproc_per_node N -m attngan train ... (gloo on CPU, NCCL on GPU).
    """
    if data_root is not None:
        _train_from_data(preset, data_root, damsm, overrides, out, resume)
        return
    from ..training.gan import train_gan

    items = overrides + ((f"damsm={damsm}",) if damsm else ())
    _run(train_gan, _resolve("gan", preset or "shapes", items, out), resume)


@main.command("export-run")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--step", type=click.IntRange(min=0), help="Checkpoint step [the newest].")
def export_run_cmd(run_dir: str, out: str, step: int | None) -> None:
    """Export a run's checkpoint without training: a train-damsm run's DAMSM folder or a train
    run's model folder (to score a run while it trains, or an earlier step)."""
    from ..config import ConfigError
    from ..files import OutputError
    from ..training.checkpoint import CheckpointError
    from ..training.export_run import export_run

    try:
        path = export_run(run_dir, out, step)
    except (CheckpointError, ConfigError, OutputError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"exported {path}")


def _train_from_data(preset: str | None, data_root: str, damsm: str | None, overrides: tuple[str, ...],
                     out: str | None, resume: bool) -> None:
    import torch

    from ..config import ConfigError
    from ..data.check import DataReport
    from ..files import OutputError
    from ..training.checkpoint import CheckpointError
    from ..training.from_data import DataCheckError, train_from_data
    from ..training.options import resolve_data_run

    name = preset or ("folder_gpu" if torch.cuda.is_available() else "folder_cpu")
    folder = out or str(Path("runs") / Path(data_root).resolve().name)
    try:
        damsm_cfg, gan_cfg = resolve_data_run(name, data_root, folder, list(overrides), damsm)
    except (ConfigError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from None
    main_process = os.environ.get("RANK", "0") == "0"  # once, not once per process under torchrun
    if main_process:
        why = " (no CUDA device; --preset folder_gpu for 256 px)" if preset is None and name == "folder_cpu" else ""
        phases = (f"DAMSM ({damsm_cfg.run.max_steps} steps), then " if damsm_cfg is not None
                  else f"encoders {gan_cfg.damsm}; ")
        click.echo(f"preset {name}{why}; run folder {folder}; {phases}GAN ({gan_cfg.run.max_steps} steps)", err=True)

    def show(report: DataReport) -> None:
        for line in report.lines():
            click.echo(line, err=True)

    try:
        result = train_from_data(damsm_cfg, gan_cfg, resume, show, {"preset": name})
    except DataCheckError as exc:
        raise click.ClickException(f"{message(exc)} (the problems are listed above)") from None
    except (CheckpointError, OutputError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    if not main_process:
        return
    if result.model is None:
        click.echo(f"stopped in the {result.stopped_in} phase at step {result.step}; the same command with "
                   "--resume continues")
        return
    click.echo(f"exported {result.model}  (attngan generate \"...\" --model {result.model})")
