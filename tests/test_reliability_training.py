"""Training faults: SIGKILL at random points (between steps, in the middle of a checkpoint
write, right after its rename, at a random moment), SIGINT/SIGTERM (a clean stop) and a second
Ctrl-C (an abort), a disk that fills up during a checkpoint write, too little space or an
unwritable folder at the start, and resuming from a checkpoint that does not fit the run.

After every kill the newest complete checkpoint loads, the previous one is still there, no
half-written ``ckpt-*.pt`` exists, and resuming ends on exactly the weights of a run that
was never interrupted (CPU, deterministic). The kill points are drawn from a seed printed by
the test (``ATTNGAN_TEST_SEED`` sets it); every kill is checked to hit a live process that had
passed the point it was meant for, and every planned kill to have happened.

The signalled and killed runs are ``attngan train`` run through :mod:`tests.training_driver`,
whose hooks report each step and can hold or stall a run at a chosen point.
"""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from attngan import files
from attngan.data.shapes import shapes_vocabulary
from attngan.text import Vocabulary
from attngan.training import checkpoint as ckpt
from attngan.training.damsm import train_damsm
from attngan.training.gan import train_gan
from attngan.training.options import resolve_config

from .conftest import random_damsm
from .test_training import TINY_DAMSM, TINY_GAN, assert_same
from .training_driver import Driven

STEPS = 18
RUN = ["run.checkpoint_every=2", "run.keep_checkpoints=2", "run.threads=1"]


@pytest.fixture(scope="module")
def damsm_dir(random_damsm_dir: Path) -> Path:
    return random_damsm_dir


def gan_config(out: Path, damsm: Path, steps: int, extra: list[str] | None = None) -> Any:
    sets = TINY_GAN + RUN + [f"run.max_steps={steps}", f"run.out_dir={out}", f"damsm={damsm}"]
    return resolve_config("gan", "shapes", sets + (extra or []))


def gan_args(out: Path, damsm: Path, steps: int, extra: list[str] | None = None) -> list[str]:
    """``attngan train`` arguments for the configuration :func:`gan_config` resolves."""
    sets = TINY_GAN + RUN + [f"run.max_steps={steps}", f"damsm={damsm}"] + (extra or [])
    return ["train", "--preset", "shapes", "--out", str(out), *[a for s in sets for a in ("--set", s)]]


def final_models(out: Path) -> dict[str, Any]:
    found = ckpt.latest_checkpoint(out / "checkpoints")
    assert found is not None
    return found[1]["models"]


def assert_same_models(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert_same(a["generator"], b["generator"])
    assert_same(a["ema"], b["ema"])
    for da, db in zip(a["discriminators"], b["discriminators"], strict=True):
        assert_same(da, db)


def check_folder(folder: Path) -> int:
    """Every named checkpoint is complete; returns the newest step."""
    paths = ckpt.list_checkpoints(folder)
    for path in paths:
        ckpt.load_checkpoint(path)  # raises on a half-written file
    found = ckpt.latest_checkpoint(folder)
    assert found is not None
    return int(found[1]["step"])


@pytest.fixture(scope="module")
def reference_4(tmp_path_factory: pytest.TempPathFactory, damsm_dir: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ref4")
    train_gan(gan_config(out, damsm_dir, 4, ["run.checkpoint_every=1"]))
    return final_models(out)


# --------------------------------------------------------------------------- SIGKILL


@pytest.fixture
def kill_seed() -> int:
    seed = int(os.environ.get("ATTNGAN_TEST_SEED") or time.time_ns() % 2**32)
    print(f"kill points drawn with ATTNGAN_TEST_SEED={seed}")  # shown with a failure, to reproduce it
    return seed


def kill(run: Driven) -> None:
    """SIGKILL a run that is still alive, and check that the kill is what ended it."""
    assert run.proc.poll() is None, f"the run ended before the kill:\n{run.output[-3000:]}"
    run.proc.send_signal(signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL, run.output[-3000:]


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_uninterrupted(tmp_path: Path, damsm_dir: Path,
                                                                   kill_seed: int) -> None:
    rng = random.Random(kill_seed)
    ref = Driven([], gan_args(tmp_path / "ref", damsm_dir, STEPS))
    out = tmp_path / "killed"
    folder = out / "checkpoints"
    args = gan_args(out, damsm_dir, STEPS)
    done: list[str] = []

    # 1. between steps, after an odd step: its work since the last checkpoint is lost and redone
    s1 = rng.choice([3, 5])
    run = Driven(["--stall", f"step:{s1}"], args)
    run.wait_for(rf"STALLED {s1}$")
    kill(run)
    assert check_folder(folder) == s1 - 1
    done.append("between steps")

    # 2. in the middle of writing a checkpoint: the partial file is a hidden temporary
    s2 = rng.choice([s1 + 3, s1 + 5])
    run = Driven(["--stall", f"write:{s2}"], [*args, "--resume"])
    partial = Path(run.wait_for(r"WRITING (\S+)")[1])
    kill(run)
    assert partial.parent == folder and partial.name.startswith(f".ckpt-{s2:08d}.pt.")
    assert partial.stat().st_size > 0 and not (folder / f"ckpt-{s2:08d}.pt").exists()
    assert check_folder(folder) == s2 - 2
    assert [p.name for p in ckpt.list_checkpoints(folder)] == [f"ckpt-{s2 - 4:08d}.pt", f"ckpt-{s2 - 2:08d}.pt"]
    done.append("writing a checkpoint")

    # 3. at a random moment: up to 1.5 step times (as measured in this run) after step k
    start = s2 - 2
    k = rng.randint(start + 2, start + 4)
    fraction = rng.uniform(0.0, 1.5)
    run = Driven([], [*args, "--resume"])
    run.wait_for(rf"STEP rank=0 step={start + 1} ")
    first = run.matched_at
    run.wait_for(rf"STEP rank=0 step={k} ")
    time.sleep(max(0.0, fraction * (run.matched_at - first) / (k - start - 1) - (time.monotonic() - run.matched_at)))
    kill(run)
    latest = check_folder(folder)
    assert start <= latest <= k + 2, (start, k, latest)
    done.append("a random moment")

    # 4. right after a checkpoint is renamed into place, before the old ones are pruned
    s4 = latest + 2
    assert s4 < STEPS, f"the random kill came too late for the last phase ({latest})"
    run = Driven(["--stall", f"replace:{s4}"], [*args, "--resume"])
    run.wait_for(r"REPLACED ")
    kill(run)
    assert check_folder(folder) == s4
    names = [p.name for p in ckpt.list_checkpoints(folder)]
    assert len(names) >= 3 and names[-2:] == [f"ckpt-{s4 - 2:08d}.pt", f"ckpt-{s4:08d}.pt"]  # not pruned yet
    done.append("after a rename")

    finish = Driven([], [*args, "--resume"])
    assert finish.finish() == 0 and finish.markers("EXIT") == [{"rank": "0", "code": "0"}], finish.output[-3000:]
    assert check_folder(folder) == STEPS
    assert len(ckpt.list_checkpoints(folder)) == 2 and not list(folder.glob(".*.tmp"))
    assert ref.finish() == 0, ref.output[-3000:]
    assert_same_models(final_models(tmp_path / "ref"), final_models(out))
    assert done == ["between steps", "writing a checkpoint", "a random moment", "after a rename"]


# --------------------------------------------------------------------------- SIGINT, SIGTERM


@pytest.fixture(scope="module")
def reference_6(tmp_path_factory: pytest.TempPathFactory, damsm_dir: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ref6")
    train_gan(gan_config(out, damsm_dir, 6))
    return final_models(out)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_saves_the_step_reached_and_resume_matches(tmp_path: Path, damsm_dir: Path,
                                                                  reference_6: dict[str, Any], sig: int) -> None:
    out = tmp_path / "run"
    args = gan_args(out, damsm_dir, 6, ["run.checkpoint_every=100"])  # the stop's checkpoint is the only one
    run = Driven(["--hold", "3"], args)
    run.wait_for(r"HOLDING rank=0 step=3")
    assert run.proc.poll() is None
    run.proc.send_signal(sig)
    assert run.finish() == 0, run.output[-3000:]
    assert "stopping at step 3 of 6 (a stop signal)" in run.output, run.output[-3000:]
    assert max(int(m["step"]) for m in run.markers("STEP")) == 3
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["ckpt-00000003.pt"]
    resumed = Driven([], [*args, "--resume"])
    assert resumed.finish() == 0, resumed.output[-3000:]
    assert [(m["rank"], m["step"]) for m in resumed.markers("RESUMED")] == [("0", "3")]
    assert_same_models(reference_6, final_models(out))


@pytest.mark.slow
def test_a_second_ctrl_c_aborts_at_once(tmp_path: Path, damsm_dir: Path) -> None:
    out = tmp_path / "run"
    run = Driven(["--hold", "3", "--long-step"], gan_args(out, damsm_dir, 6))
    run.wait_for(r"HOLDING rank=0 step=3")
    run.proc.send_signal(signal.SIGINT)  # the first: stop after this step...
    run.wait_for(r"REQUESTED rank=0 step=3")  # ...which goes on for ten minutes
    assert run.proc.poll() is None
    run.proc.send_signal(signal.SIGINT)  # the second: now
    assert run.finish(timeout=120) == 1, run.output[-3000:]  # (or TimeoutExpired: the step went on)
    assert "Aborted!" in run.output and run.markers("EXIT") == [{"rank": "0", "code": "1"}]
    folder = out / "checkpoints"
    assert check_folder(folder) == 2 and not list(folder.glob(".*.tmp"))  # nothing written for step 3
    assert not (out / "model").exists()


# --------------------------------------------------------------------------- a full disk


class _FullDisk:
    """``os`` of :mod:`attngan.files` (every atomic write), with the disk filling up during
    checkpoint ``at``: ``where`` is ``write`` (a write fails part-way) or ``fsync``."""

    def __init__(self, at: int, where: str) -> None:
        self.at, self.where = at, where
        self.count, self.current = 0, False

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdopen(self, fd: int, mode: str) -> Any:
        f = os.fdopen(fd, mode)
        self.current = Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".ckpt-")
        self.count += self.current
        return _FailingFile(f) if self.current and self.count == self.at and self.where == "write" else f

    def fsync(self, fd: int) -> None:
        if self.current and self.count == self.at and self.where == "fsync":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)


class _FailingFile:
    def __init__(self, f: Any) -> None:
        self.f, self.written = f, 0

    def write(self, data: bytes) -> int:
        if self.written + len(data) > 100_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += len(data)
        return self.f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> _FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_during_a_checkpoint(tmp_path: Path, damsm_dir: Path, reference_4: dict[str, Any],
                                       monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    folder = tmp_path / "checkpoints"
    with monkeypatch.context() as patch:
        patch.setattr(files, "os", _FullDisk(at=3, where=where))
        with pytest.raises(ckpt.CheckpointError,
                           match=rf"cannot write checkpoint {re.escape(str(folder))}/ckpt-00000003\.pt: "
                                 "No space left on device"):
            train_gan(gan_config(tmp_path, damsm_dir, 4, ["run.checkpoint_every=1"]))
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt-00000001.pt", "ckpt-00000002.pt"]  # no temporary
    assert check_folder(folder) == 2
    train_gan(gan_config(tmp_path, damsm_dir, 4, ["run.checkpoint_every=1"]), resume=True)  # space freed
    assert_same_models(reference_4, final_models(tmp_path))


def test_too_little_space_fails_before_the_first_step(tmp_path: Path, damsm_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=2**20))
    with pytest.raises(ckpt.CheckpointError, match=rf"output folder {re.escape(str(tmp_path))}/checkpoints has 1\.0 MiB free; "
                                                   r"the run's checkpoints need about \d+\.\d MiB"):
        train_gan(gan_config(tmp_path, damsm_dir, 2))
    assert not ckpt.list_checkpoints(tmp_path / "checkpoints") and not (tmp_path / "metrics.jsonl").exists()
    out = tmp_path / "damsm-run"
    cfg = resolve_config("damsm", "shapes", TINY_DAMSM + ["run.max_steps=2", f"run.out_dir={out}"])
    with pytest.raises(ckpt.CheckpointError, match=r"checkpoints-damsm has 1\.0 MiB free"):
        train_damsm(cfg)
    assert not (out / "metrics.jsonl").exists()


def test_checkpoint_size_estimate_is_close(tmp_path: Path, damsm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs: list[int] = []
    real = ckpt.check_writable
    monkeypatch.setattr(ckpt, "check_writable", lambda folder, need_bytes=0: (needs.append(need_bytes),
                                                                             real(folder, need_bytes))[1])
    train_gan(gan_config(tmp_path, damsm_dir, 1, ["run.keep_checkpoints=1"]))
    size = (tmp_path / "checkpoints" / "ckpt-00000001.pt").stat().st_size
    assert needs[-1] == pytest.approx(2 * size, rel=0.1)  # keep=1: the kept one and the one being written


def test_unwritable_output_folder(tmp_path: Path, damsm_dir: Path) -> None:
    from click.testing import CliRunner

    from attngan.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    with pytest.raises(ckpt.CheckpointError, match=rf"output folder {re.escape(str(out))} is not writable: Not a directory"):
        train_gan(gan_config(out, damsm_dir, 2))
    cfg = resolve_config("damsm", "shapes", TINY_DAMSM + ["run.max_steps=2", f"run.out_dir={out}"])
    with pytest.raises(ckpt.CheckpointError, match="is not writable"):
        train_damsm(cfg)
    args = ["train", "--out", str(out), "--damsm", str(damsm_dir), *[a for s in TINY_GAN for a in ("--set", s)]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and f"Error: output folder {out} is not writable" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- resuming the wrong thing


def test_a_fresh_run_never_overwrites_an_earlier_one(tmp_path: Path, damsm_dir: Path) -> None:
    train_gan(gan_config(tmp_path, damsm_dir, 2))
    before = {p.name: p.read_bytes() for p in ckpt.list_checkpoints(tmp_path / "checkpoints")}
    with pytest.raises(ckpt.CheckpointError, match=r"already holds checkpoints of an earlier run \(newest: "
                                                   r"ckpt-00000002\.pt\); pass --resume"):
        train_gan(gan_config(tmp_path, damsm_dir, 4))
    assert {p.name: p.read_bytes() for p in ckpt.list_checkpoints(tmp_path / "checkpoints")} == before


def test_resuming_a_checkpoint_that_does_not_fit(tmp_path: Path, damsm_dir: Path) -> None:
    train_gan(gan_config(tmp_path, damsm_dir, 2))
    path = tmp_path / "checkpoints" / "ckpt-00000002.pt"
    with pytest.raises(ckpt.CheckpointError, match=rf"{re.escape(str(path))} does not fit this run: .*size mismatch"):
        train_gan(gan_config(tmp_path, damsm_dir, 4, ["generator.channels=16"]), resume=True)
    words = shapes_vocabulary().words
    other = random_damsm(tmp_path / "other-damsm", Vocabulary([words[0], *reversed(words[1:])]))
    with pytest.raises(ckpt.CheckpointError, match=rf"{re.escape(str(path))} does not fit this run: it was trained "
                                                   rf"with another vocabulary \(\d+ words\) than {re.escape(str(other))}"):
        train_gan(gan_config(tmp_path, damsm_dir, 4, [f"damsm={other}"]), resume=True)
