"""The ``attngan`` command with test hooks, for the tests that signal, kill or skew the clock of
training processes (``tests/test_reliability_*.py``); run by them as
``python -m tests.training_driver [HOOKS] attngan <arguments>``, alone or under torchrun.

Every process prints marker lines, each on a line of its own (whatever the progress bar wrote
last), that the tests wait for: ``START rank=R pid=P``, ``STEP rank=R step=N rng=H`` after each
step (``H``: a digest of the process's torch random state), ``RESUMED rank=R step=N rng=H``,
``EXIT rank=R code=C``. Hooks:

``--stall step:N|write:N|replace:N``
    hang (to be killed) after step N, in the middle of writing checkpoint N, or right after
    renaming checkpoint N into place; prints ``STALLED``, ``WRITING <temporary file>`` or
    ``REPLACED <file>`` first.
``--hold N [--hold-rank R] [--long-step]``
    after step N (on rank R only, if given) print ``HOLDING`` and wait for this process's stop
    signal, then print ``REQUESTED``; with ``--long-step`` the step then goes on for ten
    minutes more (a second Ctrl-C is to end it at once).
``--clock-ahead N [--clock-rank R]``
    after step N, the training loop of rank R (default 1) reads a clock one hour ahead.
``--metrics-full N``
    the disk is full (ENOSPC) when the main process writes line N of ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RANK = int(os.environ.get("RANK", "0"))
ROOT = Path(__file__).resolve().parents[1]


def say(message: str) -> None:
    sys.stdout.write(f"\n{message}\n")  # one write: a line of its own, also between other processes' output
    sys.stdout.flush()


def rng_digest() -> str:
    return hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest()[:12]


def hang(message: str) -> None:
    say(message)
    time.sleep(300)
    os._exit(3)  # never killed: the test has failed already


class _StallingFile:
    """Lets the first write of a checkpoint reach the disk, then stalls (to be killed)."""

    def __init__(self, f: Any, where: str) -> None:
        self.f, self.where = f, where

    def write(self, data: bytes) -> int:
        n = self.f.write(data)
        self.f.flush()
        os.fsync(self.f.fileno())
        hang(f"WRITING {self.where}")
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> _StallingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


class _HookedOs:
    """Stands in for the ``os`` module of :mod:`attngan.files` (atomic writes): stalls while writing
    checkpoint ``at`` (``kind="write"``) or right after renaming it into place (``kind="replace"``)."""

    def __init__(self, kind: str, at: int) -> None:
        self.kind, self.name = kind, f"ckpt-{at:08d}.pt"

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdopen(self, fd: int, mode: str) -> Any:
        f = os.fdopen(fd, mode)
        where = os.readlink(f"/proc/self/fd/{fd}")
        if self.kind == "write" and Path(where).name.startswith(f".{self.name}."):
            return _StallingFile(f, where)
        return f

    def replace(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        os.replace(src, dst)
        if self.kind == "replace" and Path(dst).name == self.name:
            hang(f"REPLACED {dst}")


class MetricsFull:
    """Stands in for the ``os`` module of :mod:`attngan.training.loop`: writing line ``at`` of
    ``metrics.jsonl`` fails with ENOSPC after half of it reached the file."""

    def __init__(self, at: int) -> None:
        self.at, self.lines, self.fds = at, 0, set()

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def open(self, path: Any, flags: int, mode: int = 0o777) -> int:
        fd = os.open(path, flags, mode)
        if Path(path).name == "metrics.jsonl":
            self.fds.add(fd)
        return fd

    def write(self, fd: int, data: bytes) -> int:
        if fd in self.fds:
            self.lines += 1
            if self.lines == self.at:
                os.write(fd, data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)


class _ClockAhead:
    """Stands in for the ``time`` module of :mod:`attngan.training.loop`: an hour ahead."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def time(self) -> float:
        return time.time() + 3600


def install(opts: argparse.Namespace) -> None:
    from attngan import files
    from attngan.training import loop
    from attngan.training.damsm import DAMSMTrainer
    from attngan.training.gan import GANTrainer

    flags: list[loop.StopFlag] = []
    real_enter = loop.StopFlag.__enter__

    def enter(self: loop.StopFlag) -> loop.StopFlag:
        flags.append(self)
        return real_enter(self)

    loop.StopFlag.__enter__ = enter  # type: ignore[method-assign]
    kind, _, at = (opts.stall or "none:0").partition(":")

    def hooked(real: Callable[..., dict[str, float]]) -> Callable[..., dict[str, float]]:
        def train_step(self: loop.Trainer, batch: dict[str, Any]) -> dict[str, float]:
            logs = real(self, batch)
            say(f"STEP rank={RANK} step={self.step} rng={rng_digest()}")
            if kind == "step" and self.step == int(at):
                hang(f"STALLED {self.step}")
            if self.step == opts.clock_ahead and RANK == opts.clock_rank:
                loop.time = _ClockAhead()  # type: ignore[assignment]
                say(f"CLOCK AHEAD rank={RANK} step={self.step}")
            if self.step == opts.hold and opts.hold_rank in (None, RANK):
                say(f"HOLDING rank={RANK} step={self.step}")
                deadline = time.time() + 120
                while not flags[-1].requested and time.time() < deadline:
                    time.sleep(0.01)
                say(f"REQUESTED rank={RANK} step={self.step}")
                if opts.long_step:
                    time.sleep(600)
            return logs

        return train_step

    GANTrainer.train_step = hooked(GANTrainer.train_step)  # type: ignore[method-assign]
    DAMSMTrainer.train_step = hooked(DAMSMTrainer.train_step)  # type: ignore[method-assign]
    real_resume = loop.Trainer.resume

    def resume(self: loop.Trainer) -> None:
        real_resume(self)
        say(f"RESUMED rank={RANK} step={self.step} rng={rng_digest()}")

    loop.Trainer.resume = resume  # type: ignore[method-assign]
    if kind in ("write", "replace"):
        files.os = _HookedOs(kind, int(at))  # type: ignore[assignment]
    if opts.metrics_full:
        loop.os = MetricsFull(opts.metrics_full)  # type: ignore[assignment]


def main(argv: list[str]) -> int:
    split = argv.index("attngan")  # ("--" would not get past torchrun)
    parser = argparse.ArgumentParser(prog="tests.training_driver")
    parser.add_argument("--stall")
    parser.add_argument("--hold", type=int)
    parser.add_argument("--hold-rank", type=int)
    parser.add_argument("--long-step", action="store_true")
    parser.add_argument("--clock-ahead", type=int)
    parser.add_argument("--clock-rank", type=int, default=1)
    parser.add_argument("--metrics-full", type=int)
    opts = parser.parse_args(argv[:split])
    say(f"START rank={RANK} pid={os.getpid()}")
    install(opts)
    from attngan.cli import main as cli

    code: int | str | None = 0
    try:
        cli(argv[split + 1:], prog_name="attngan")
    except SystemExit as exc:
        code = exc.code
    say(f"EXIT rank={RANK} code={code}")
    return code if isinstance(code, int) else 1


# --------------------------------------------------------------------------- the tests' side


class Driven:
    """This module run with ``hooks`` and the ``attngan`` arguments ``args``: one process, or
    ``torchrun`` processes on this machine. Output lines are collected as they come."""

    def __init__(self, hooks: list[str], args: list[str], nproc: int = 0, limit: float = 600) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        command = ["-m", "tests.training_driver", *hooks, "attngan", *args]
        if nproc:
            command = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                       "--max_restarts", "0", *command]
        self.proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.times: list[float] = []  # time.monotonic() when each line was read
        self.matched_at = 0.0  # ... and when the line :meth:`wait_for` returned last was
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.watchdog = threading.Timer(limit, self.kill_all)
        self.watchdog.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line)
                self.times.append(time.monotonic())
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 200) -> re.Match[str]:
        """The first output line matching ``pattern``; fails (with the output) when the processes
        end or ``timeout`` passes first."""
        deadline = time.time() + timeout
        seen = 0
        with self.changed:
            while True:
                for i in range(seen, len(self.lines)):
                    if found := re.search(pattern, self.lines[i]):
                        self.matched_at = self.times[i]
                        return found
                seen = len(self.lines)
                if not self.reader.is_alive() or time.time() > deadline:
                    self.kill_all()
                    raise AssertionError(f"no line matching {pattern!r}; output:\n{self.output}")
                self.changed.wait(0.5)

    def finish(self, timeout: float = 300) -> int:
        """Wait for the process to end; returns its exit code (the processes are killed on a timeout)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise
        self.reader.join(30)
        self.watchdog.cancel()
        return code

    def kill_all(self) -> None:
        """SIGKILL the process, its process group and the workers that said their pid (torchrun
        starts each worker in a session of its own)."""
        workers = [int(m["pid"]) for m in self.markers("START")]
        for kill, pid in [(os.killpg, self.proc.pid), *((os.kill, w) for w in workers)]:
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def markers(self, name: str) -> list[dict[str, str]]:
        """The ``key=value`` fields of every ``name`` marker line, in order."""
        return [dict(re.findall(r"(\w+)=(\S+)", line.split(name, 1)[1])) for line in self.lines
                if re.search(rf"(^|\s){name} rank=", line)]


if __name__ == "__main__":
    from attngan.cli.process import exit_process

    exit_process(main(sys.argv[1:]))  # as ``python -m attngan`` ends
