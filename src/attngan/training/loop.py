"""What both training loops share: batches, progress, metric sinks, clean stopping."""

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

from .distributed import DistInfo

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
                                num_workers=self.num_workers, persistent_workers=False)
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
