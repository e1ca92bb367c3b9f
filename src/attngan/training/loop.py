"""What both trainers share: batches, progress, metric sinks, clean stopping, and the loop itself
(:class:`Trainer`: resume, space check, resolved config, deadline, stop flag and write failures
agreed by every process, finite losses, checkpoints, sinks, export)."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data.types import Batch, TextImageData
from ..files import OutputError, write_atomic, writing
from . import checkpoint as ckpt
from .distributed import DistInfo, agree, agree_max, gather_objects, mean_of_logs

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

    def __init__(self, dataset: TextImageData, collate: Callable[[list[dict[str, Any]]], Batch], global_batch: int,
                 seed: int, dist: DistInfo,
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
        self.batches_per_epoch = len(dataset) // global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(f"the data set has {len(dataset)} items, fewer than one batch of {global_batch}")

    def position(self, step: int) -> tuple[int, int]:
        return divmod(step, self.batches_per_epoch)

    def iterate(self, start_step: int) -> Iterator[Batch]:
        epoch, index = self.position(start_step)
        while True:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(epoch)
            r, b = self.dist.rank, self.local_batch
            batches = [idx[r * b:(r + 1) * b] for idx in epoch_batches(len(self.dataset), self.global_batch,
                                                                       self.seed, epoch)[index:]]
            # its own generator: a loader draws its workers' base seed, which must not advance the
            # global random state (a resumed run would then draw differently from an uninterrupted one)
            loader: DataLoader[Batch] = DataLoader(
                self.dataset,  # type: ignore[arg-type]  # torch's stub wants a Dataset; map-style needs only [i], len
                batch_sampler=batches, collate_fn=self.collate,
                num_workers=self.num_workers, persistent_workers=False, pin_memory=self.dist.device.type == "cuda",
                generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
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


def progress_bar(total: int, initial: int, desc: str) -> Any:
    """A run's tqdm bar: ``total`` steps, starting at ``initial`` (shown on a terminal; written to a
    redirected stderr too, at most once a second)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
                disable=None if sys.stderr.isatty() else False, mininterval=1.0)


class PhaseProgress:
    """One progress bar for several runs in a row (``attngan train --data-root``: the DAMSM, then
    the GAN): ``total`` steps in all; a run's step ``s`` shows as ``offset + s``, ``offset`` being
    the steps of the runs before it, under the label of its phase (:meth:`phase`)."""

    def __init__(self, total: int) -> None:
        self.total, self.offset, self.label = total, 0, ""
        self.bar: Any = None

    def phase(self, offset: int, label: str) -> None:
        self.offset, self.label = offset, label

    def start(self, step: int, desc: str) -> None:
        if self.bar is None:
            self.bar = progress_bar(self.total, self.offset + step, self.label or desc)
            return
        self.bar.n = self.offset + step
        self.bar.set_description(self.label or desc, refresh=False)
        self.bar.set_postfix({}, refresh=False)  # the last phase's losses
        self.bar.refresh()

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, values: dict[str, str], refresh: bool = False) -> None:
        self.bar.set_postfix(values, refresh=refresh)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class MetricsSink:
    """Appends one JSON object per logged step to ``metrics.jsonl`` (or ``name``); mirrors to
    TensorBoard when installed; drives a progress bar with the losses, step time and ETA (its
    own, or a shared :class:`PhaseProgress`, which it leaves open).

    Opening the sink trims ``metrics.jsonl`` to the steps a run resumed at ``start_step`` has
    done (lines of later steps, which the resumed run logs again, and an unfinished last line
    go), so the file holds each step once. A line that cannot be written is removed again and
    raises :class:`OutputError` naming the file; a TensorBoard failure is logged and ends the
    mirroring only (``metrics.jsonl`` holds every value).
    """

    def __init__(self, out_dir: Path, enabled: bool, total_steps: int, start_step: int, desc: str,
                 name: str = "metrics.jsonl", progress: PhaseProgress | None = None) -> None:
        self.enabled = enabled
        self.path = out_dir / name
        self.owns_bar = progress is None
        self.tensorboard = out_dir / "tensorboard"
        self.writer: Any = None
        self.bar: Any = None
        self.fd: int | None = None
        self.start_time = time.time()
        if not enabled:
            return
        with writing(self.path, "nothing was trained"):
            trim_metrics(self.path, start_step)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed
            pass
        else:
            try:
                self.writer = SummaryWriter(str(self.tensorboard))
            except Exception as exc:  # noqa: BLE001 - a mirror never stops a run
                self._tensorboard_failed(exc)
        if progress is not None:
            self.bar = progress
            progress.start(start_step, desc)
            return
        self.bar = progress_bar(total_steps, start_step, desc)

    def log(self, step: int, values: dict[str, float]) -> None:
        """Append the line of ``step``; raises :class:`OutputError` (the file as it was before) when
        it cannot be written."""
        if not self.enabled or self.fd is None:
            return
        values = {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in values.items()}
        record = {"step": step, "time": round(time.time() - self.start_time, 2), **values}
        data = (json.dumps(record) + "\n").encode()
        with writing(self.path, f"the run stops at step {step}; the last checkpoint is intact, and --resume "
                                "repeats the steps after it"):
            size = os.fstat(self.fd).st_size
            try:
                written = 0
                while written < len(data):
                    written += os.write(self.fd, data[written:])
            except OSError:
                os.ftruncate(self.fd, size)  # no partial line (shrinking a file needs no space)
                raise
        if self.writer is not None:
            try:
                for k, v in values.items():
                    if isinstance(v, (int, float)):
                        self.writer.add_scalar(k, v, step)
            except Exception as exc:  # noqa: BLE001 - a mirror never stops a run
                self._tensorboard_failed(exc)
        if self.bar is not None:
            shown = {k: f"{v:.3g}" for k, v in values.items() if k.startswith(("loss", "step_s"))}
            self.bar.set_postfix(shown, refresh=False)

    def _tensorboard_failed(self, exc: Exception) -> None:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        log.error("cannot write TensorBoard events to %s: %s; TensorBoard mirroring stops, metrics.jsonl "
                  "keeps every value and training goes on", self.tensorboard, reason)
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001, S110 - already reported
                pass

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None and self.owns_bar:
            self.bar.close()
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception as exc:  # noqa: BLE001
                self._tensorboard_failed(exc)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def trim_metrics(path: Path, after_step: int) -> None:
    """Cut ``path`` (``metrics.jsonl``) before its first line of a step after ``after_step`` and
    before an unfinished last line (a run killed while writing it)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    keep = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            step = None
        if isinstance(step, int) and step > after_step:
            break
        keep += len(line)
    if keep < len(data):
        dropped = data[keep:].count(b"\n") + (not data.endswith(b"\n"))
        log.info("%s: dropping %d line(s) after step %d (they are logged again)", path, dropped, after_step)
        os.truncate(path, keep)


def write_resolved_config(out_dir: Path, config: dict[str, Any], name: str) -> None:
    """The resolved configuration, next to the run's outputs (atomically; errors name the file)."""
    import yaml

    path = out_dir / name
    with writing(path, "nothing was trained"):
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, yaml.safe_dump(config, sort_keys=False).encode())


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
    metrics_file = "metrics.jsonl"
    progress: PhaseProgress | None = None  # a bar shared with other runs (else the run draws its own)
    stop_reason: str | None = None  # after fit: None (max_steps reached), "signal" or "time limit"
    cfg: Any
    dist: DistInfo
    out: Path
    stream: BatchStream
    step: int

    def train_step(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def optimizers(self) -> list[torch.optim.Optimizer]:
        raise NotImplementedError

    def initialise(self) -> None:
        """Called on a run that does not resume, before its first step (weights from elsewhere)."""

    def resolved_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def export(self, path: Path | None = None) -> Path:
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
        """Load the newest good checkpoint (each process also takes back its own random state when
        the checkpoint holds one per process of a run of this size); errors name it."""
        found = ckpt.latest_checkpoint(self.checkpoint_folder)
        if found is None:
            raise ckpt.CheckpointError(f"--resume: no checkpoint in {self.checkpoint_folder}")
        path, state = found
        try:
            self.load_state_dict(state)
            per_process = state.get("rng_processes")
            if per_process is not None and len(per_process) == self.dist.world_size:
                ckpt.set_rng_state(per_process[self.dist.rank])
            elif per_process is not None:
                log.info("%s holds the random states of %d processes; this run has %d, so every process "
                         "continues from process 0's", path, len(per_process), self.dist.world_size)
        except (KeyError, RuntimeError, TypeError, ValueError, IndexError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise ckpt.CheckpointError(f"{path} does not fit this run: {reason}") from None
        log.info("resumed from %s at step %d", path, self.step)
        was = (state.get("config") or {}).get("run", {}).get("precision")
        if was and was != self.cfg.run.precision:  # run.precision auto, resumed on another kind of machine
            log.warning("%s was trained in %s; it goes on in %s (run.precision=%s keeps the first)",
                        path, was, self.cfg.run.precision, was)

    def save_checkpoint(self, write: bool = True) -> Path | None:
        """Write the checkpoint of this step; returns its path on the main process, which writes it.
        Every process must call this at the same step (the random states of all of them go into
        it); ``write=False`` takes part in that without writing."""
        per_process = gather_objects(ckpt.rng_state()) if self.dist.enabled else None
        if not (self.dist.is_main and write):
            return None
        state = self.state_dict()
        if per_process is not None:
            state["rng_processes"] = per_process
        return ckpt.save_checkpoint(self.checkpoint_folder, self.step, state, self.cfg.run.keep_checkpoints)

    def fit(self, resume: bool = False) -> Path:
        """Train to ``run.max_steps`` (or the time limit, or a stop signal on any process), saving
        checkpoints; returns the exported folder.

        Every process leaves the loop at the same step: a stop signal, an expired time limit or
        a failed write of the main process on any of them is agreed at each step boundary, so no
        process waits in a collective for one that has gone. Then the main process saves the
        checkpoint of the step reached and exports, and all processes end together (or all raise).
        A write that fails (metrics, checkpoint, resolved config, export) raises
        :class:`OutputError` or :class:`~.checkpoint.CheckpointError` naming the file; no
        checkpoint is written after it, so the last one is intact and ``--resume`` repeats the
        steps after it.
        """
        run, dist = self.cfg.run, self.dist
        if resume:
            self.resume()
        else:
            ckpt.check_fresh(self.checkpoint_folder)
            self.initialise()
        sink = MetricsSink(self.out, False, run.max_steps, self.step, self.progress_name)

        def prepare() -> None:
            nonlocal sink
            need = ckpt.state_bytes(self.state_dict()) + ckpt.pending_optimizer_bytes(self.optimizers())
            ckpt.check_space(self.checkpoint_folder, need, run.keep_checkpoints)
            write_resolved_config(self.out, self.resolved_config(), self.config_file)
            sink = MetricsSink(self.out, True, run.max_steps, self.step, self.progress_name, self.metrics_file,
                               self.progress)

        self._all_or_none(self._caught(prepare) if dist.is_main else None, "prepare the run folder")
        deadline = time.time() + run.time_limit_minutes * 60 if run.time_limit_minutes > 0 else None
        failure: Exception | None = None  # of the main process, agreed at the next step boundary
        try:
            with StopFlag() as stop:
                for batch in self.stream.iterate(self.step):
                    # every process stops at the same step (a signal or a clock on one of them suffices)
                    expired = deadline is not None and time.time() > deadline
                    code = agree_max(_FAILED if failure else _STOP if stop.requested or expired else _GO)
                    if code == _FAILED or self.step >= run.max_steps:
                        break
                    if code == _STOP:
                        self._log_stop("a stop signal" if stop.requested else "the time limit" if expired
                                       else "another process was asked to stop")
                        # every process agrees on why: a signal on any of them outranks a time limit
                        self.stop_reason = "signal" if agree(stop.requested) else "time limit"
                        break
                    t0 = time.time()
                    logs = self.train_step(batch)
                    sink.advance()
                    if self.step % run.log_every == 0 or self.step == run.max_steps:
                        logs = mean_of_logs(logs)  # the mean over processes: what one process would log
                        if dist.is_main:
                            values = {**logs, "step_s": time.time() - t0, **self.step_logs()}
                            failure = self._caught(sink.log, self.step, values)
                    if dist.is_main and failure is None:
                        failure = self._caught(self.after_step)
                    if self.step % run.checkpoint_every == 0:  # none written after a failed write
                        write = failure is None
                        failure = self._caught(self.save_checkpoint, write=write) or failure
        finally:
            sink.close()
        self._all_or_none(failure, "write its outputs")
        self._all_or_none(self._caught(self._finish), "write the last checkpoint or the export")
        return self.out / self.export_name

    def _finish(self) -> None:
        """The last checkpoint (every process takes part), then the export (main process)."""
        self.save_checkpoint()
        if not self.dist.is_main:
            return
        folder = self.out / self.export_name
        with writing(folder, f"the checkpoint of step {self.step} is intact: --resume exports it again"):
            self.export()
        self.after_export()

    def _caught(self, work: Any, *args: Any, **kwargs: Any) -> Exception | None:
        """Run ``work(*args, **kwargs)``; on the main process, return the exception it raises instead
        of raising it (it is raised once every process knows, see :meth:`_all_or_none`)."""
        try:
            work(*args, **kwargs)
        except Exception as exc:
            if not self.dist.is_main:
                raise
            return exc
        return None

    def _all_or_none(self, failure: Exception | None, what: str) -> None:
        """Raise on every process when the main process failed (``failure``), else on none."""
        if agree(failure is not None):
            if failure is not None:
                raise failure
            raise OutputError(f"process {self.dist.rank} stops: process 0 could not {what} (its error names "
                              "the file)")

    def _log_stop(self, reason: str) -> None:
        who = f"process {self.dist.rank} of {self.dist.world_size}: " if self.dist.enabled else ""
        log.warning("%sstopping at step %d of %d (%s); saving a checkpoint", who, self.step, self.cfg.run.max_steps,
                    reason)


_GO, _STOP, _FAILED = 0, 1, 2  # agreed at every step boundary: the largest wins
