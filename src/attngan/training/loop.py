"""What both trainers share: batches, progress, metric sinks, clean stopping, and the loop itself
(:class:`Trainer`: resume, space check, resolved config, deadline, stop flag agreed by every
process, finite losses, checkpoints, sinks, export)."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from . import checkpoint as ckpt
from .distributed import DistInfo, agree, barrier, mean_of_logs

log = logging.getLogger(__name__)


def epoch_batches(num_items: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of one epoch: a seeded permutation cut into full batches."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_items, generator=g).tolist()
    n = num_items // global_batch
    return [order[i * global_batch:(i + 1) * global_batch] for i in range(n)]


class BatchStream:
    """Endless, resumable stream of this process's share of each global batch.

    Global batch ``k`` of epoch ``e`` is the same whatever the number of processes; process
    ``r`` of ``W`` takes its ``r``-th contiguous slice.
    """

    def __init__(self, dataset: Dataset, collate: Any, global_batch: int, seed: int, dist: DistInfo,
                 num_workers: int = 0) -> None:
        if global_batch % dist.world_size:
            raise ValueError(f"run.batch_size {global_batch} is not divisible by {dist.world_size} processes")
        self.dataset = dataset
        self.collate = collate
        self.global_batch = global_batch
        self.local_batch = global_batch // dist.world_size
        self.seed = seed
        self.dist = dist
        self.num_workers = num_workers
        self.batches_per_epoch = len(dataset) // global_batch  # type: ignore[arg-type]
        if self.batches_per_epoch == 0:
            raise ValueError(f"the data set has {len(dataset)} items, fewer than one batch of {global_batch}")  # type: ignore[arg-type]

    def position(self, step: int) -> tuple[int, int]:
        return divmod(step, self.batches_per_epoch)

    def iterate(self, start_step: int) -> Iterator[dict[str, Any]]:
        epoch, index = self.position(start_step)
        while True:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            r, b = self.dist.rank, self.local_batch
            batches = [idx[r * b:(r + 1) * b] for idx in epoch_batches(len(self.dataset), self.global_batch,  # type: ignore[arg-type]
                                                                       self.seed, epoch)[index:]]
            loader = DataLoader(self.dataset, batch_sampler=batches, collate_fn=self.collate,
                                num_workers=self.num_workers, persistent_workers=False,
                                pin_memory=self.dist.device.type == "cuda")
            yield from loader
            epoch, index = epoch + 1, 0


class StopFlag:
    """Turns SIGINT/SIGTERM into a request to save and stop at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stop requested: saving a checkpoint after this step (press Ctrl-C again to abort)")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class MetricsSink:
    """Appends one JSON object per logged step to ``metrics.jsonl``; mirrors to TensorBoard
    when installed; drives a progress bar with the losses, step time and ETA."""

    def __init__(self, out_dir: Path, enabled: bool, total_steps: int, start_step: int, desc: str) -> None:
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.writer: Any = None
        self.bar: Any = None
        self.start_time = time.time()
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"))
        except Exception:  # tensorboard not installed
            self.writer = None
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps, initial=start_step, desc=desc, dynamic_ncols=True,
                        disable=None if sys.stderr.isatty() else False, mininterval=1.0)

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        values = {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in values.items()}
        record = {"step": step, "time": round(time.time() - self.start_time, 2), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, step)
        if self.bar is not None:
            shown = {k: f"{v:.3g}" for k, v in values.items() if k.startswith(("loss", "step_s"))}
            self.bar.set_postfix(shown, refresh=False)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def write_resolved_config(out_dir: Path, config: dict[str, Any], name: str) -> None:
    """The resolved configuration, next to the run's outputs."""
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / name).write_text(yaml.safe_dump(config, sort_keys=False))


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def pad_to(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    """Zero-pad ``dim`` of ``tensor`` to ``length`` (tokens ``[B, T]`` or words ``[B, D, T]``)."""
    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor, tensor.new_zeros(shape)], dim=dim)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names it and the step (nothing was updated)."""


def require_finite(step: int, losses: dict[str, torch.Tensor]) -> None:
    """Raise :class:`NonFiniteLossError` before a backward pass on a NaN or infinite loss."""
    bad = [name for name, value in losses.items() if not bool(torch.isfinite(value.detach()).all())]
    if bad:
        raise NonFiniteLossError(f"{', '.join(bad)} is not finite at step {step + 1}; nothing was updated and the "
                                 "last checkpoint is intact (resume with run.precision=fp32 or a lower learning rate)")


class Trainer:
    """The loop every trainer runs; subclasses provide the step, their state and their export.

    Subclasses set ``cfg`` (with ``run``), ``dist``, ``out`` (the run folder), ``stream`` (a
    :class:`BatchStream`) and ``step``, and implement :meth:`train_step`, :meth:`state_dict`,
    :meth:`load_state_dict`, :meth:`optimizers` and :meth:`export`.
    """

    progress_name = "train"
    checkpoint_dir = "checkpoints"
    config_file = "config.yaml"
    export_name = "model"
    cfg: Any
    dist: DistInfo
    out: Path
    stream: BatchStream
    step: int

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def optimizers(self) -> list[torch.optim.Optimizer]:
        raise NotImplementedError

    def resolved_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def export(self) -> Path:
        """The run's product (``out / export_name``), written at the end by the main process."""
        raise NotImplementedError

    def step_logs(self) -> dict[str, float]:
        """Values logged beside the losses (learning rate, EMA decay...)."""
        return {}

    def after_step(self) -> None:
        """Called by the main process after every step (sample grids)."""

    def after_export(self) -> None:
        """Called by the main process after :meth:`export`."""

    @property
    def checkpoint_folder(self) -> Path:
        return self.out / self.checkpoint_dir

    def resume(self) -> None:
        """Load the newest good checkpoint; errors name it."""
        found = ckpt.latest_checkpoint(self.checkpoint_folder)
        if found is None:
            raise ckpt.CheckpointError(f"--resume: no checkpoint in {self.checkpoint_folder}")
        path, state = found
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise ckpt.CheckpointError(f"{path} does not fit this run: {reason}") from None
        log.info("resumed from %s at step %d", path, self.step)

    def save_checkpoint(self) -> Path:
        return ckpt.save_checkpoint(self.checkpoint_folder, self.step, self.state_dict(), self.cfg.run.keep_checkpoints)

    def fit(self, resume: bool = False) -> Path:
        """Train to ``run.max_steps`` (or the time limit, or a stop signal on any process), saving
        checkpoints; returns the exported folder."""
        run, dist = self.cfg.run, self.dist
        if resume:
            self.resume()
        else:
            ckpt.check_fresh(self.checkpoint_folder)
        if dist.is_main:
            need = ckpt.state_bytes(self.state_dict()) + ckpt.pending_optimizer_bytes(self.optimizers())
            ckpt.check_space(self.checkpoint_folder, need, run.keep_checkpoints)
            write_resolved_config(self.out, self.resolved_config(), self.config_file)
        sink = MetricsSink(self.out, dist.is_main, run.max_steps, self.step, self.progress_name)
        deadline = time.time() + run.time_limit_minutes * 60 if run.time_limit_minutes > 0 else None
        try:
            with StopFlag() as stop:
                for batch in self.stream.iterate(self.step):
                    # every process stops at the same step (a signal or a clock on one of them suffices)
                    expired = deadline is not None and time.time() > deadline
                    if self.step >= run.max_steps or agree(stop.requested or expired):
                        break
                    t0 = time.time()
                    logs = self.train_step(batch)
                    sink.advance()
                    if self.step % run.log_every == 0 or self.step == run.max_steps:
                        logs = mean_of_logs(logs)  # the mean over processes: what one process would log
                        if dist.is_main:
                            sink.log(self.step, {**logs, "step_s": time.time() - t0, **self.step_logs()})
                    if dist.is_main:
                        self.after_step()
                    if dist.is_main and self.step % run.checkpoint_every == 0:
                        self.save_checkpoint()
        finally:
            sink.close()
        if dist.is_main:
            self.save_checkpoint()
            self.export()
            self.after_export()
        barrier()  # every process ends together, once the export is written
        return self.out / self.export_name
