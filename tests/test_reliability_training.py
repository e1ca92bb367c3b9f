"""Training faults: SIGKILL at seeded random points (between steps, in the middle of a
checkpoint write, right after its rename, at a random moment), a disk that fills up during
a checkpoint write, too little space or an unwritable folder at the start, and resuming
from a checkpoint that does not fit the run.

After every kill the newest complete checkpoint loads, the previous one is still there, no
half-written ``ckpt-*.pt`` exists, and resuming ends on exactly the weights of a run that
was never interrupted (CPU, deterministic).

The killed runs are this module run as a script (``python -m tests.test_reliability_training``):
it trains with hooks that report each step and can stall at a chosen point for the kill.
"""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from attngan.config import ImageEncoderConfig, TextEncoderConfig
from attngan.data.shapes import shapes_vocabulary
from attngan.hub import DAMSMEncoders, save_damsm
from attngan.models.image_encoder import build_image_encoder
from attngan.models.text_encoder import TextEncoder
from attngan.text import Vocabulary
from attngan.training import checkpoint as ckpt
from attngan.training.damsm import train_damsm
from attngan.training.gan import train_gan
from attngan.training.options import resolve_config

from .test_training import TINY_DAMSM, TINY_GAN, assert_same

ROOT = Path(__file__).resolve().parents[1]
STEPS = 14
RUN = ["run.checkpoint_every=2", "run.keep_checkpoints=2", "run.threads=1"]


def random_damsm(path: Path, vocab: Vocabulary | None = None) -> Path:
    """A DAMSM folder with random encoders (what the GAN loop needs of one, at no training cost)."""
    torch.manual_seed(0)
    vocab = vocab or shapes_vocabulary()
    te = TextEncoder(TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=16, hidden_dim=16, dropout=0.0))
    ie = build_image_encoder(ImageEncoderConfig(kind="light", embedding_dim=16, image_size=32, light_channels=8))
    return save_damsm(DAMSMEncoders(te.eval(), ie.eval(), vocab, {"steps": 0}), path)


@pytest.fixture(scope="module")
def damsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_damsm(tmp_path_factory.mktemp("damsm") / "damsm")


def gan_config(out: Path, damsm: Path, steps: int, extra: list[str] | None = None) -> Any:
    sets = TINY_GAN + RUN + [f"run.max_steps={steps}", f"run.out_dir={out}", f"damsm={damsm}"]
    return resolve_config("gan", "shapes", sets + (extra or []))


def final_models(out: Path) -> dict[str, Any]:
    found = ckpt.latest_checkpoint(out / "checkpoints")
    assert found is not None
    return found[1]["models"]


def assert_same_models(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert_same(a["generator"], b["generator"])
    assert_same(a["ema"], b["ema"])
    for da, db in zip(a["discriminators"], b["discriminators"], strict=True):
        assert_same(da, db)


# --------------------------------------------------------------------------- the killed process


class _StallingFile:
    """Lets the first write of a checkpoint reach the disk, then stalls (to be killed)."""

    def __init__(self, f: Any, say: Callable[[str], None], where: str) -> None:
        self.f, self.say, self.where = f, say, where

    def write(self, data: bytes) -> int:
        n = self.f.write(data)
        self.f.flush()
        os.fsync(self.f.fileno())
        _hang(self.say, f"WRITING {self.where}")
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> _StallingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


class _HookedOs:
    """Stands in for the ``os`` module of :mod:`attngan.training.checkpoint`: stalls while
    writing checkpoint ``at`` (``kind="write"``) or right after renaming it into place
    (``kind="replace"``)."""

    def __init__(self, kind: str, at: int, say: Callable[[str], None]) -> None:
        self.kind, self.name, self.say = kind, f"ckpt-{at:08d}.pt", say

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdopen(self, fd: int, mode: str) -> Any:
        f = os.fdopen(fd, mode)
        where = os.readlink(f"/proc/self/fd/{fd}")
        if self.kind == "write" and Path(where).name.startswith(f".{self.name}."):
            return _StallingFile(f, self.say, where)
        return f

    def replace(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        os.replace(src, dst)
        if self.kind == "replace" and Path(dst).name == self.name:
            _hang(self.say, f"REPLACED {dst}")


def _hang(say: Callable[[str], None], message: str) -> None:
    say(message)
    time.sleep(300)
    os._exit(3)  # never killed: the test has failed already


def _driver(out: str, damsm: str, steps: str, resume: str, stall: str) -> int:
    """Train with the hooks; ``stall`` is ``none``, ``step:N``, ``write:N`` or ``replace:N``."""
    from attngan.training import gan

    kind, _, at = stall.partition(":")

    def say(message: str) -> None:
        print(f"\n{message}", flush=True)  # on a line of its own, whatever the progress bar wrote last

    real_step = gan.GANTrainer.train_step

    def train_step(self: gan.GANTrainer, batch: dict[str, Any]) -> dict[str, float]:
        logs = real_step(self, batch)
        say(f"STEP {self.step}")
        if kind == "step" and self.step == int(at):
            _hang(say, f"STALLED {self.step}")
        return logs

    gan.GANTrainer.train_step = train_step  # type: ignore[method-assign]
    if kind in ("write", "replace"):
        ckpt.os = _HookedOs(kind, int(at), say)  # type: ignore[assignment]
    train_gan(gan_config(Path(out), Path(damsm), int(steps)), resume=resume == "resume")
    say("DONE")
    return 0


class Run:
    """One driver process; ``until`` kills it (SIGKILL) at the first line starting with a marker."""

    def __init__(self, out: Path, damsm: Path, resume: bool, stall: str = "none") -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        args = [str(out), str(damsm), str(STEPS), "resume" if resume else "fresh", stall]
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.test_reliability_training", *args], cwd=ROOT,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.watchdog = threading.Timer(240, self.proc.kill)
        self.watchdog.start()

    def until(self, marker: str, after: float = 0.0) -> str | None:
        """Read lines until one starts with ``marker``; then kill (``after`` seconds later) and
        return the rest of that line. None when the process ended first."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith(marker):
                if after:
                    threading.Timer(after, self.proc.send_signal, [signal.SIGKILL]).start()
                    self.finish()
                else:
                    self.proc.send_signal(signal.SIGKILL)
                    self.finish()
                return line[len(marker):].strip()
        self.finish()
        return None

    def finish(self) -> int:
        assert self.proc.stdout is not None
        self.lines += self.proc.stdout.readlines()
        code = self.proc.wait()
        self.watchdog.cancel()
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)[-4000:]


def check_folder(folder: Path) -> int:
    """Every named checkpoint is complete; returns the newest step."""
    paths = ckpt.list_checkpoints(folder)
    for path in paths:
        ckpt.load_checkpoint(path)  # raises on a half-written file
    found = ckpt.latest_checkpoint(folder)
    assert found is not None
    return int(found[1]["step"])


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_uninterrupted(tmp_path: Path, damsm_dir: Path) -> None:
    rng = random.Random(20240607)
    ref = Run(tmp_path / "ref", damsm_dir, resume=False)
    assert ref.finish() == 0, ref.output
    out = tmp_path / "killed"
    folder = out / "checkpoints"

    # 1. between steps, after an odd step: its work since the last checkpoint is lost and redone
    s1 = rng.choice([3, 5])
    run = Run(out, damsm_dir, resume=False, stall=f"step:{s1}")
    assert run.until("STALLED") is not None, run.output
    assert check_folder(folder) == s1 - 1

    # 2. in the middle of writing a checkpoint: the partial file is a hidden temporary
    s2 = rng.choice([s1 + 3, s1 + 5])
    run = Run(out, damsm_dir, resume=True, stall=f"write:{s2}")
    line = run.until("WRITING")
    assert line, run.output
    partial = Path(line)
    assert partial.parent == folder and partial.name.startswith(f".ckpt-{s2:08d}.pt.")
    assert partial.stat().st_size > 0 and not (folder / f"ckpt-{s2:08d}.pt").exists()
    assert check_folder(folder) == s2 - 2
    assert [p.name for p in ckpt.list_checkpoints(folder)] == [f"ckpt-{s2 - 4:08d}.pt", f"ckpt-{s2 - 2:08d}.pt"]

    # 3. at a random moment a little after the resumed run starts stepping
    run = Run(out, damsm_dir, resume=True)
    run.until("STEP", after=rng.uniform(0.2, 1.2))
    latest = check_folder(folder)
    assert latest >= s2 - 2

    # 4. right after a checkpoint is renamed into place, before the old ones are pruned
    s4 = latest + 2 if latest + 2 < STEPS else None
    if s4 is not None:
        run = Run(out, damsm_dir, resume=True, stall=f"replace:{s4}")
        assert run.until("REPLACED") is not None, run.output
        assert check_folder(folder) == s4
        names = [p.name for p in ckpt.list_checkpoints(folder)]
        assert len(names) >= 3 and names[-2:] == [f"ckpt-{s4 - 2:08d}.pt", f"ckpt-{s4:08d}.pt"]  # not pruned yet

    done = Run(out, damsm_dir, resume=True)
    assert done.finish() == 0 and "DONE" in done.output, done.output
    assert check_folder(folder) == STEPS
    assert len(ckpt.list_checkpoints(folder)) == 2 and not list(folder.glob(".*.tmp"))
    assert_same_models(final_models(tmp_path / "ref"), final_models(out))


# --------------------------------------------------------------------------- a full disk


class _FullDisk:
    """``os`` of the checkpoint module, with the disk filling up during checkpoint ``at``:
    ``where`` is ``write`` (a write fails part-way) or ``fsync``."""

    def __init__(self, at: int, where: str) -> None:
        self.at, self.where = at, where
        self.count = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdopen(self, fd: int, mode: str) -> Any:
        self.count += 1
        f = os.fdopen(fd, mode)
        return _FailingFile(f) if self.count == self.at and self.where == "write" else f

    def fsync(self, fd: int) -> None:
        if self.count == self.at and self.where == "fsync":
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


@pytest.fixture(scope="module")
def reference_4(tmp_path_factory: pytest.TempPathFactory, damsm_dir: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ref4")
    train_gan(gan_config(out, damsm_dir, 4, ["run.checkpoint_every=1"]))
    return final_models(out)


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_during_a_checkpoint(tmp_path: Path, damsm_dir: Path, reference_4: dict[str, Any],
                                       monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    folder = tmp_path / "checkpoints"
    with monkeypatch.context() as patch:
        patch.setattr(ckpt, "os", _FullDisk(at=3, where=where))
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


if __name__ == "__main__":
    sys.exit(_driver(*sys.argv[1:]))
