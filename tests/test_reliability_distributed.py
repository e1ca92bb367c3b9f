"""Several processes (torchrun, gloo on the CPU) stop, save and resume together.

A stop signal to one process, or a time limit that expires on one process first, stops every
process at the same step: they exit 0 together (torchrun does not have to kill anyone), the
main process writes exactly one checkpoint at that step, and ``--resume`` under torchrun ends
on the weights of an uninterrupted run. DAMSM under torchrun computes what one process
computes, and resumes with every process's own random state.

The processes run ``attngan`` through :mod:`tests.training_driver`, whose hooks hold rank 1
after a chosen step until its signal arrives (so the step reached is known) or move its clock
an hour ahead; the signal itself is a real SIGTERM sent to that worker's pid.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from attngan.hub import load_damsm
from attngan.training import checkpoint as ckpt
from attngan.training.damsm import DAMSMTrainer, train_damsm
from attngan.training.distributed import DistInfo
from attngan.training.options import resolve_config

from .test_reliability_training import assert_same_models, final_models, gan_args
from .test_training import TINY_DAMSM, assert_same_updates, read_metrics
from .training_driver import Driven

pytestmark = pytest.mark.slow
STEPS = 6


def worker_of(agent: int, pid: int) -> int:
    """The RANK of process ``pid``, checked to be a child of the torchrun agent ``agent``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[1]) == agent, f"{pid} is not a worker of torchrun {agent}"
    env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    return int(env["RANK"])


def test_sigterm_to_one_process_stops_all_at_one_step_and_resume_matches(tmp_path: Path, random_damsm_dir: Path) -> None:
    damsm_dir = random_damsm_dir
    ref = Driven([], gan_args(tmp_path / "ref", damsm_dir, STEPS), nproc=2)
    assert ref.finish() == 0, ref.output[-4000:]

    out = tmp_path / "stopped"
    args = gan_args(out, damsm_dir, STEPS, ["run.checkpoint_every=100"])  # the stop's checkpoint is the only one
    run = Driven(["--hold", "2", "--hold-rank", "1"], args, nproc=2)
    pid = int(run.wait_for(r"START rank=1 pid=(\d+)")[1])
    assert worker_of(run.proc.pid, pid) == 1
    run.wait_for(r"HOLDING rank=1 step=2")
    assert run.proc.poll() is None
    os.kill(pid, signal.SIGTERM)  # to rank 1 only
    assert run.finish() == 0, run.output[-4000:]
    text = run.output
    assert "process 1 of 2: stopping at step 2 of 6 (a stop signal)" in text, text[-4000:]
    assert "process 0 of 2: stopping at step 2 of 6 (another process was asked to stop)" in text, text[-4000:]
    assert sorted((m["rank"], m["code"]) for m in run.markers("EXIT")) == [("0", "0"), ("1", "0")]
    assert max(int(m["step"]) for m in run.markers("STEP")) == 2  # neither went on
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["ckpt-00000002.pt"]
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]

    resumed = Driven([], [*args, "--resume"], nproc=2)
    assert resumed.finish() == 0, resumed.output[-4000:]
    assert sorted((m["rank"], m["step"]) for m in resumed.markers("RESUMED")) == [("0", "2"), ("1", "2")]
    assert_same_models(final_models(tmp_path / "ref"), final_models(out))
    logged = [{k: v for k, v in r.items() if k.startswith("loss")} for r in read_metrics(out / "metrics.jsonl")]
    assert logged == [{k: v for k, v in r.items() if k.startswith("loss")}
                      for r in read_metrics(tmp_path / "ref" / "metrics.jsonl")]  # steps 1-6, each once


DAMSM_RUN = TINY_DAMSM + ["optim.lr=0.0002", "run.deterministic=true", "run.threads=1"]


def damsm_args(out: Path, steps: int, extra: list[str] | None = None) -> list[str]:
    sets = DAMSM_RUN + [f"run.max_steps={steps}"] + (extra or [])
    return ["train-damsm", "--preset", "shapes", "--out", str(out), *[a for s in sets for a in ("--set", s)]]


def damsm_models(out: Path) -> dict[str, Any]:
    found = ckpt.latest_checkpoint(out / "checkpoints-damsm")
    assert found is not None
    return found[1]


def test_time_limit_on_one_process_stops_all_and_damsm_matches_one_process(tmp_path: Path) -> None:
    one = tmp_path / "one"
    cfg = resolve_config("damsm", "shapes", DAMSM_RUN + [f"run.max_steps={STEPS}", f"run.out_dir={one}"])
    train_damsm(cfg)

    out = tmp_path / "two"
    args = damsm_args(out, STEPS, ["run.time_limit_minutes=30", "run.checkpoint_every=100"])
    run = Driven(["--clock-ahead", "3", "--clock-rank", "1"], args, nproc=2)
    assert run.finish(timeout=600) == 0, run.output[-4000:]  # no process waits in a collective for the other
    text = run.output
    assert "process 1 of 2: stopping at step 3 of 6 (the time limit)" in text, text[-4000:]
    assert "process 0 of 2: stopping at step 3 of 6 (another process was asked to stop)" in text, text[-4000:]
    assert sorted((m["rank"], m["code"]) for m in run.markers("EXIT")) == [("0", "0"), ("1", "0")]
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints-damsm")] == ["ckpt-00000003.pt"]
    stopped = damsm_models(out)
    states = [s["torch"] for s in stopped["rng_processes"]]  # each process's own (seeded with seed + rank)
    assert len(states) == 2 and not torch.equal(states[0], states[1])
    at_stop = {m["rank"]: m["rng"] for m in run.markers("STEP") if m["step"] == "3"}

    resumed = Driven([], [*args, "--resume"], nproc=2)
    assert resumed.finish() == 0, resumed.output[-4000:]
    back = {m["rank"]: m["rng"] for m in resumed.markers("RESUMED")}
    assert back == at_stop and len(set(back.values())) == 2  # every process took back its own random state

    la, lb = read_metrics(one / "metrics.jsonl"), read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in la] == [r["step"] for r in lb] == list(range(1, STEPS + 1))
    for ra, rb in zip(la, lb, strict=True):  # the losses of the global batch, every step
        for k in ("loss_w0", "loss_w1", "loss_s0", "loss_s1"):
            assert rb[k] == pytest.approx(ra[k], rel=1e-3, abs=1e-5), (ra["step"], k)
    start = DAMSMTrainer(resolve_config("damsm", "shapes", DAMSM_RUN + [f"run.out_dir={tmp_path / 'start'}"]),
                         DistInfo())
    a, b = damsm_models(one)["models"], damsm_models(out)["models"]
    lr = start.cfg.optim.lr
    assert_same_updates(a["text_encoder"], b["text_encoder"], start.text_encoder.state_dict(), lr, STEPS)
    assert_same_updates(a["image_encoder"], b["image_encoder"], start.image_encoder.state_dict(), lr, STEPS)
    exported = load_damsm(out / "damsm")
    for k, v in exported.text_encoder.state_dict().items():
        assert torch.equal(v, b["text_encoder"][k]), k
    config = json.loads((out / "damsm" / "config.json").read_text())
    assert config["metadata"]["steps"] == STEPS
    assert re.search(r"exported .*damsm", resumed.output) and resumed.output.count("exported ") == 1


def test_a_failed_write_of_the_main_process_stops_every_process(tmp_path: Path, random_damsm_dir: Path) -> None:
    """The disk fills up while process 0 logs step 3 (simulated): both processes stop at the next
    step boundary with an error (process 1's names process 0) instead of waiting in a collective."""
    out = tmp_path / "run"
    run = Driven(["--metrics-full", "3"], gan_args(out, random_damsm_dir, STEPS), nproc=2)
    assert run.finish(timeout=600) != 0
    text = run.output
    assert f"Error: cannot write {out / 'metrics.jsonl'}: No space left on device; the run stops at step 3" in text
    assert "Error: process 1 stops: process 0 could not write its outputs (its error names the file)" in text
    assert sorted((m["rank"], m["code"]) for m in run.markers("EXIT")) == [("0", "1"), ("1", "1")], text[-4000:]
    assert max(int(m["step"]) for m in run.markers("STEP")) == 3
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")][-1] == "ckpt-00000002.pt"
