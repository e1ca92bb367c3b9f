"""Export a run's checkpoint without training: the DAMSM folder of a ``train-damsm`` run or the
model folder of a ``train`` run, at its newest checkpoint or a given step (to score a run while it
trains, or an earlier step of it)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from ..config import ConfigError, from_dict
from . import checkpoint as ckpt
from .damsm import DAMSMTrainer
from .distributed import DistInfo
from .gan import GANTrainer
from .options import DAMSMTrainConfig, GANTrainConfig

log = logging.getLogger(__name__)

_KINDS: tuple[tuple[type[DAMSMTrainer] | type[GANTrainer], type[DAMSMTrainConfig] | type[GANTrainConfig], str], ...] = (
    (DAMSMTrainer, DAMSMTrainConfig, "damsm"), (GANTrainer, GANTrainConfig, "gan"))


def export_run(run_dir: str | os.PathLike[str], out: str | os.PathLike[str], step: int | None = None) -> Path:
    """Write the product of ``run_dir``'s checkpoint of ``step`` (None: the newest) to ``out``.

    The run is rebuilt from its resolved config (``damsm_config.yaml`` or ``train_config.yaml``),
    on the CPU; nothing in the run folder changes. Raises ``FileNotFoundError`` naming what is
    missing (the config, or a checkpoint of that step).
    """
    run_dir = Path(run_dir)
    found = [kind for kind in _KINDS if (run_dir / kind[0].config_file).exists()]
    if not found:
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no damsm_config.yaml or train_config.yaml")
    trainer_type, config_type, section = found[0]
    file = run_dir / trainer_type.config_file
    try:
        data = yaml.safe_load(file.read_text())
        cfg = from_dict(config_type, data[section], section)
    except (yaml.YAMLError, KeyError, TypeError, ConfigError) as exc:
        raise ConfigError(f"{file}: not a resolved run config ({exc})") from None
    folder = run_dir / trainer_type.checkpoint_dir
    paths = {ckpt.checkpoint_step(p): p for p in ckpt.list_checkpoints(folder)}
    if not paths:
        raise FileNotFoundError(f"{folder} holds no checkpoint")
    chosen = max(paths) if step is None else step
    if chosen not in paths:
        raise FileNotFoundError(f"{folder} has no checkpoint of step {chosen} (it has {', '.join(map(str, sorted(paths)))})")
    cfg = _with_run_dir(cfg, run_dir)
    trainer: DAMSMTrainer | GANTrainer = (GANTrainer(cfg, DistInfo()) if isinstance(cfg, GANTrainConfig)
                                          else DAMSMTrainer(cfg, DistInfo()))
    trainer.load_state_dict(ckpt.load_checkpoint(paths[chosen]))
    log.info("exporting %s at step %d to %s", run_dir, chosen, out)
    return trainer.export(Path(out))


def _with_run_dir(cfg: DAMSMTrainConfig | GANTrainConfig, run_dir: Path) -> DAMSMTrainConfig | GANTrainConfig:
    import dataclasses

    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(run_dir), device="cpu"))
