"""``attngan train --data-root DIR``: captioned images to a model in one resumable run -- the data
checked (:mod:`attngan.data.check`), the DAMSM encoders trained (unless some are named), then the
GAN -- in one folder::

    <out>/run.json                                                  the data and how far each phase got
    <out>/damsm_config.yaml  checkpoints-damsm/  damsm_metrics.jsonl  damsm/         phase 1: DAMSM
    <out>/train_config.yaml  checkpoints/  metrics.jsonl  samples/  model/           phase 2: GAN

One progress bar covers both phases. A stop signal (Ctrl-C, SIGTERM) in either phase saves a
checkpoint of the step reached and ends the command; ``--resume`` continues that phase and then
the next. A phase that ends by its time limit (``run.time_limit_minutes``) is done: the next
one follows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.check import DataReport, check_training_data
from ..errors import SettingError
from ..files import write_atomic, writing
from ..version import __version__
from . import checkpoint as ckpt
from .damsm import DAMSMTrainer
from .distributed import init_distributed, shutdown
from .gan import GANTrainer
from .loop import PhaseProgress, Trainer
from .options import DAMSMTrainConfig, GANTrainConfig

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
DAMSM_METRICS = "damsm_metrics.jsonl"


class DataCheckError(SettingError):
    """The data check found problems with the data at ``data.root``; nothing was trained
    (``report`` says what)."""

    def __init__(self, report: DataReport) -> None:
        super().__init__("data.root", f"{len(report.problems)} problem(s) with the data; nothing was trained")
        self.report = report


@dataclass(frozen=True)
class DataRunResult:
    """``model``: the exported inference folder, or None when a stop signal ended the run in
    phase ``stopped_in`` (``damsm`` or ``gan``) at ``step``; ``report``: the data check."""

    model: Path | None
    report: DataReport
    stopped_in: str | None = None
    step: int = 0


def _read_state(out: Path) -> dict[str, Any]:
    path = out / RUN_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ckpt.CheckpointError(f"{path} cannot be read ({exc}); it records how far the run got") from None
    if not isinstance(state, dict) or not isinstance(state.get("phases", {}), dict):
        raise ckpt.CheckpointError(f"{path} does not describe a run (expected an object with 'phases')")
    return state


def _write_state(out: Path, state: dict[str, Any]) -> None:
    path = out / RUN_FILE
    with writing(path, "the checkpoints are intact: --resume continues"):
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())


def check_data(damsm: DAMSMTrainConfig | None, gan: GANTrainConfig) -> DataReport:
    """The data check of a run: images for a batch of each phase, at the GAN's resolution, read
    with the DAMSM's caption length (the GAN reads the encoders')."""
    batch = max(gan.run.batch_size, damsm.run.batch_size if damsm is not None else 0)
    max_words = damsm.text_encoder.max_words if damsm is not None else 18
    return check_training_data(gan.data, gan.generator.image_sizes[-1], max_words, batch)


def train_from_data(damsm: DAMSMTrainConfig | None, gan: GANTrainConfig, resume: bool = False,
                    on_report: Callable[[DataReport], None] | None = None,
                    meta: dict[str, Any] | None = None) -> DataRunResult:
    """Run the phases (``damsm`` None: the GAN alone, with the encoders ``gan.damsm`` names) in
    ``gan.run.out_dir`` (see the module doc). ``on_report`` receives the data check first (main
    process); problems raise :class:`DataCheckError` before anything is written. ``meta`` is kept
    in ``run.json`` (e.g. the preset)."""
    out = Path(gan.run.out_dir)
    dist = init_distributed(gan.run.device)
    progress: PhaseProgress | None = None
    try:
        report = check_data(damsm, gan)
        if dist.is_main and on_report is not None:
            on_report(report)
        if not report.ok:
            raise DataCheckError(report)
        data = gan.data.describe(gan.generator.image_sizes[-1], "train")
        state = _start_state(out, resume, data, meta or {})
        if dist.is_main:
            _write_state(out, state)
        phases: list[tuple[str, Any]] = ([("damsm", damsm)] if damsm is not None else []) + [("gan", gan)]
        progress = PhaseProgress(sum(cfg.run.max_steps for _, cfg in phases)) if dist.is_main else None
        offset = 0
        for number, (name, cfg) in enumerate(phases, 1):
            done = state["phases"].get(name, {})
            if done.get("done"):
                log.info("the %s phase is done (step %s); going on", name, done.get("step"))
                offset += cfg.run.max_steps
                continue
            trainer: Trainer = DAMSMTrainer(cfg, dist) if name == "damsm" else GANTrainer(cfg, dist)
            if name == "damsm":
                trainer.metrics_file = DAMSM_METRICS
            if progress is not None:
                progress.phase(offset, f"{number}/{len(phases)} {name.upper()}")
                trainer.progress = progress
            trainer.fit(resume and bool(ckpt.list_checkpoints(trainer.checkpoint_folder)))
            finished = trainer.stop_reason != "signal"
            state["phases"][name] = {"done": finished, "step": trainer.step, "ended_by": trainer.stop_reason or
                                     "max_steps", "folder": str(out / trainer.export_name)}
            if dist.is_main:
                _write_state(out, state)
            if not finished:
                return DataRunResult(None, report, name, trainer.step)
            offset += cfg.run.max_steps
        return DataRunResult(out / GANTrainer.export_name, report)
    finally:
        if progress is not None:
            progress.close()
        shutdown()


def _start_state(out: Path, resume: bool, data: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The run's state: a new one, or (``resume``) the recorded one, which must be of the same data."""
    state = _read_state(out)
    if state and not resume:
        raise ckpt.CheckpointError(f"{out} already holds a run ({RUN_FILE}); pass --resume to continue it, or "
                                   "choose another folder")
    if state and state.get("data", {}).get("root") != data.get("root"):
        raise ckpt.CheckpointError(f"{out} holds a run on {state.get('data', {}).get('root')}, not on "
                                   f"{data.get('root')}: --resume continues a run on its own data")
    if not state:
        state = {"data": data, "phases": {}, "version": __version__, **meta}
    return state
