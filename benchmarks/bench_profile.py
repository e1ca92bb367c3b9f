"""Where a GAN training step spends its time, operator by operator (torch.profiler, self CPU time),
and steps of several speed variants timed side by side in one process.

* :func:`child_profile` (a fresh process): one trainer of a case and speed variant, warmed up
  (compiled, where it compiles), then ``steps`` steps under the profiler; every operator's self
  time per step. The compiled kernels of ``run.speed.compile`` are not operators: their time is
  the self time of the compiled graphs' calls, reported as one row, "compiled kernels (inductor)".
* :func:`child_interleaved` (a fresh process): trainers of several variants of one case, warmed
  up, then stepped in turn, round after round: a burst of load on a shared machine hits every
  variant alike, so their ratios hold where absolute times do not (peak memory is the process's,
  not a variant's: measure it with ``bench_train.child_step``).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from bench_train import fixed_batch, make_trainer

COMPILED = "compiled kernels (inductor)"
# the profiler's names for the calls of compiled graphs (their self time is the kernels' time)
COMPILED_MARKERS = ("CompiledFxGraph", "CompiledFunction", "Torch-Compiled Region", "inductor")


def operator_name(key: str) -> str:
    """The profile row an event belongs to: the operator's name, or :data:`COMPILED`."""
    return COMPILED if any(marker in key for marker in COMPILED_MARKERS) else key


def child_profile(case: str, variant: str, precision: str, steps: int, threads: int, top: int = 40) -> dict[str, Any]:
    """(Fresh process.) Self CPU time per step of each operator of a GAN step of ``case`` with the
    speed ``variant``: the ``top`` largest, and the rest summed as ``other operators``."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(case, Path(tmp), precision, variant)
        batch = fixed_batch(trainer)
        t0 = time.perf_counter()
        trainer.train_step(batch)
        first = time.perf_counter() - t0
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            trainer.train_step(batch)
            times.append(time.perf_counter() - t0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(steps):
                trainer.train_step(batch)
            profiled = (time.perf_counter() - t0) / steps
        totals: dict[str, float] = defaultdict(float)
        calls: dict[str, int] = defaultdict(int)
        for event in prof.key_averages():
            name = operator_name(event.key)
            totals[name] += event.self_cpu_time_total / 1e3 / steps  # ms per step
            calls[name] += event.count // steps
    ranked = sorted(totals, key=lambda n: -totals[n])
    ops = [{"name": n, "self_ms": totals[n], "calls": calls[n]} for n in ranked[:top]]
    ops.append({"name": "other operators", "self_ms": sum(totals[n] for n in ranked[top:]),
                "calls": sum(calls[n] for n in ranked[top:])})
    return {"case": case, "variant": variant, "precision": trainer.cfg.run.precision, "batch": trainer.cfg.run.batch_size,
            "steps": steps, "first_step_s": first, "s_per_step": min(times), "profiled_s_per_step": profiled,
            "total_self_ms": sum(totals.values()), "ops": ops}


def child_interleaved(case: str, variants: list[list[str]], rounds: int, threads: int) -> dict[str, Any]:
    """(Fresh process.) One trainer per ``[speed variant, precision]`` of ``case``, warmed up (the first
    step, with any compilation, timed apart), then one step of each in turn for ``rounds`` rounds.
    Per variant: the fastest and the median step, and both against the first variant's."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = [make_trainer(case, Path(tmp) / f"v{i}", precision, variant)
                    for i, (variant, precision) in enumerate(variants)]
        batch = fixed_batch(trainers[0])
        first = []
        for trainer in trainers:
            t0 = time.perf_counter()
            trainer.train_step(batch)
            first.append(time.perf_counter() - t0)
        times: list[list[float]] = [[] for _ in variants]
        for _ in range(rounds):
            for i, trainer in enumerate(trainers):
                t0 = time.perf_counter()
                trainer.train_step(batch)
                times[i].append(time.perf_counter() - t0)
        used = [t.cfg.run.precision for t in trainers]
        batch_size = trainers[0].cfg.run.batch_size
    rows = []
    for (variant, _), precision, t, f in zip(variants, used, times, first, strict=True):
        rows.append({"variant": variant, "precision": precision, "s_min": min(t), "s_median": statistics.median(t),
                     "first_step_s": f, "speedup_min": min(times[0]) / min(t),
                     "speedup_median": statistics.median(times[0]) / statistics.median(t)})
    return {"case": case, "batch": batch_size, "rounds": rounds, "baseline": variants[0][0], "variants": rows}
