"""Every writer of a training run on a full disk and on read-only output: ``metrics.jsonl``, the
sample grids, the exported model (and DAMSM) folder, the resolved config, checkpoints and
TensorBoard.

A write that fails stops the run with an error naming the file (sample grids and TensorBoard
only log it: training goes on), leaves no partial file, and leaves the last checkpoint intact:
``--resume`` then ends on the weights of a run that never failed.

The full disk is simulated: the writes of the module at fault go through a stand-in for its
``os`` that raises ``ENOSPC`` part-way (after some bytes reached the file). Read-only output is
real (``chmod``); those tests are skipped where permissions are not enforced (as root).
TensorBoard is not a dependency: a stand-in ``torch.utils.tensorboard`` module fails instead.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from attngan import files
from attngan.files import OutputError
from attngan.hub import load_damsm, load_pretrained
from attngan.training import checkpoint as ckpt
from attngan.training import loop
from attngan.training.damsm import train_damsm
from attngan.training.gan import GANTrainer, train_gan
from attngan.training.options import resolve_config

from .test_reliability_training import assert_same_models, check_folder, final_models, gan_config, reference_4
from .test_training import TINY_DAMSM, read_metrics
from .training_driver import MetricsFull

__all__ = ["reference_4"]  # a fixture, used by name
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def damsm_dir(random_damsm_dir: Path) -> Path:
    return random_damsm_dir


def config(out: Path, damsm: Path, extra: list[str] | None = None) -> Any:
    return gan_config(out, damsm, 4, ["run.checkpoint_every=1", "run.keep_checkpoints=4", *(extra or [])])


def resume_and_compare(out: Path, damsm: Path, reference: dict[str, Any], extra: list[str] | None = None) -> None:
    """Resume the run in ``out`` to its end: the weights of the run that never failed, each step logged once."""
    train_gan(config(out, damsm, extra), resume=True)
    assert_same_models(reference, final_models(out))
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 4]
    load_pretrained(out / "model")


class _FullFiles:
    """``os`` of :mod:`attngan.files` (atomic writes): the disk fills up while a file whose
    temporary name matches ``pattern`` is written (the first 1000 bytes get there)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)
        self.hits: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdopen(self, fd: int, mode: str) -> Any:
        f = os.fdopen(fd, mode)
        name = os.readlink(f"/proc/self/fd/{fd}")
        if self.pattern.search(Path(name).name):
            self.hits.append(name)
            return _FillingFile(f)
        return f


class _FillingFile:
    def __init__(self, f: Any) -> None:
        self.f, self.written = f, 0

    def write(self, data: bytes) -> int:
        room = 1000 - self.written
        if len(data) > room:
            self.f.write(data[:room])
            self.f.flush()
            self.written = 1000
            raise ENOSPC
        self.written += len(data)
        return self.f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


def leftovers(folder: Path) -> list[str]:
    """Temporary files and folders of interrupted writes anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if ".tmp" in p.name or ".old" in p.name)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` (file or folder) without write permission for the block; skips the test where
    that does not stop writes (root)."""
    mode = path.stat().st_mode
    path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        if os.access(path, os.W_OK):
            pytest.skip("permissions are not enforced here (running as root?)")
        yield
    finally:
        path.chmod(mode)


def require_permissions(tmp_path: Path) -> None:
    """Skip the calling test where a folder without write permission can still be written (root)."""
    probe = tmp_path / ".probe"
    probe.mkdir()
    with read_only(probe):
        pass
    probe.rmdir()


# --------------------------------------------------------------------------- metrics.jsonl


def test_metrics_on_a_full_disk_stop_the_run_without_a_partial_line(tmp_path: Path, damsm_dir: Path,
                                                                    reference_4: dict[str, Any],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = tmp_path / "metrics.jsonl"
    with monkeypatch.context() as patch:
        patch.setattr(loop, "os", MetricsFull(at=3))
        with pytest.raises(OutputError, match=rf"cannot write {re.escape(str(metrics))}: No space left on device; "
                                              "the run stops at step 3; the last checkpoint is intact"):
            train_gan(config(tmp_path, damsm_dir))
    assert metrics.read_text().endswith("\n") and [r["step"] for r in read_metrics(metrics)] == [1, 2]
    assert check_folder(tmp_path / "checkpoints") == 2  # none written after the failed line
    assert not (tmp_path / "model").exists() and not leftovers(tmp_path)
    resume_and_compare(tmp_path, damsm_dir, reference_4)


def test_read_only_metrics_file_stops_a_resumed_run_before_it_trains(tmp_path: Path, damsm_dir: Path,
                                                                     reference_4: dict[str, Any]) -> None:
    train_gan(gan_config(tmp_path, damsm_dir, 2, ["run.checkpoint_every=1", "run.keep_checkpoints=4"]))
    metrics = tmp_path / "metrics.jsonl"
    before = {p.name: p.read_bytes() for p in ckpt.list_checkpoints(tmp_path / "checkpoints")}
    with read_only(metrics):
        with pytest.raises(OutputError, match=rf"cannot write {re.escape(str(metrics))}: Permission denied; "
                                              "nothing was trained"):
            train_gan(config(tmp_path, damsm_dir), resume=True)
    assert {p.name: p.read_bytes() for p in ckpt.list_checkpoints(tmp_path / "checkpoints")} == before
    resume_and_compare(tmp_path, damsm_dir, reference_4)


def test_resume_drops_the_lines_of_steps_it_repeats(tmp_path: Path, damsm_dir: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(f'{{"step": {s}, "loss": 1.0}}\n' for s in (1, 2, 3, 4)) + '{"step": 5, "lo')
    loop.trim_metrics(metrics, 2)  # resumed at step 2; 3 and 4 come again, 5 was cut off by a kill
    assert metrics.read_text() == '{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 1.0}\n'
    loop.trim_metrics(metrics, 0)
    assert metrics.read_text() == ""


# --------------------------------------------------------------------------- sample grids


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_sample_grids_that_cannot_be_written_are_logged_and_training_goes_on(
        tmp_path: Path, damsm_dir: Path, reference_4: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, fault: str) -> None:
    samples = tmp_path / "samples"
    grid = samples / "step-00000002.png"
    cfg = config(tmp_path, damsm_dir, ["run.sample_every=2"])
    with caplog.at_level(logging.ERROR, logger="attngan.training.gan"):
        if fault == "full":
            disk = _FullFiles(r"^\.step-\d+(-attention)?\.png\..*\.tmp$")
            monkeypatch.setattr(files, "os", disk)
            train_gan(cfg)
            monkeypatch.undo()
            assert len(disk.hits) == 3  # the grids of steps 2 and 4 and after the export (each stops its set)
            reason = "No space left on device"
        else:
            samples.mkdir(parents=True)
            with read_only(samples):
                train_gan(cfg)
            reason = "Permission denied"
    assert f"cannot write {grid}: {reason}; training goes on without this sample grid" in caplog.text
    assert list(samples.iterdir()) == []  # no partial PNG, no temporary
    assert_same_models(reference_4, final_models(tmp_path))
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]
    load_pretrained(tmp_path / "model")


# --------------------------------------------------------------------------- the export


def test_export_on_a_full_disk_names_the_folder_and_resume_exports(tmp_path: Path, damsm_dir: Path,
                                                                    reference_4: dict[str, Any],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model"
    with monkeypatch.context() as patch:
        disk = _FullFiles(r"^\.model\.safetensors\..*\.tmp$")
        patch.setattr(files, "os", disk)
        with pytest.raises(OutputError, match=rf"cannot write {re.escape(str(model))}: No space left on device; "
                                              r"the checkpoint of step 4 is intact: --resume exports it again"):
            train_gan(config(tmp_path, damsm_dir))
    assert disk.hits and not model.exists() and not leftovers(tmp_path)
    assert check_folder(tmp_path / "checkpoints") == 4
    resume_and_compare(tmp_path, damsm_dir, reference_4)


def test_export_to_a_read_only_folder(tmp_path: Path, damsm_dir: Path, reference_4: dict[str, Any],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    require_permissions(tmp_path)
    model = tmp_path / "model"
    real = GANTrainer.after_step
    protected: list[Path] = []

    def after_step(self: GANTrainer) -> None:  # the run folder turns read-only after step 1
        real(self)
        if self.step == 1:
            tmp_path.chmod(0o555)
            protected.append(tmp_path)

    monkeypatch.setattr(GANTrainer, "after_step", after_step)
    try:
        with pytest.raises(OutputError, match=rf"cannot write {re.escape(str(model))}: Permission denied; "
                                              r"the checkpoint of step 4 is intact"):
            train_gan(config(tmp_path, damsm_dir))
    finally:
        tmp_path.chmod(0o755)
    monkeypatch.undo()
    assert protected and not model.exists() and not leftovers(tmp_path)
    assert check_folder(tmp_path / "checkpoints") == 4
    resume_and_compare(tmp_path, damsm_dir, reference_4)


def test_damsm_export_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "damsm"
    cfg = resolve_config("damsm", "shapes", TINY_DAMSM + ["run.max_steps=2", f"run.out_dir={tmp_path}"])
    with monkeypatch.context() as patch:
        patch.setattr(files, "os", _FullFiles(r"^\.model\.safetensors\..*\.tmp$"))
        with pytest.raises(OutputError, match=rf"cannot write {re.escape(str(folder))}: No space left on device; "
                                              r"the checkpoint of step 2 is intact"):
            train_damsm(cfg)
    assert not folder.exists() and not leftovers(tmp_path)
    assert check_folder(tmp_path / "checkpoints-damsm") == 2
    train_damsm(cfg, resume=True)
    assert load_damsm(folder).metadata["steps"] == 2


# --------------------------------------------------------------------------- the resolved config


def test_resolved_config_on_a_full_disk(tmp_path: Path, damsm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "train_config.yaml"
    monkeypatch.setattr(files, "os", _FullFiles(r"^\.train_config\.yaml\..*\.tmp$"))
    with pytest.raises(OutputError, match=rf"cannot write {re.escape(str(path))}: No space left on device; "
                                          "nothing was trained"):
        train_gan(config(tmp_path, damsm_dir))
    assert not path.exists() and not leftovers(tmp_path) and not (tmp_path / "metrics.jsonl").exists()
    assert not ckpt.list_checkpoints(tmp_path / "checkpoints")


def test_read_only_run_folder_is_refused_before_training(tmp_path: Path, damsm_dir: Path,
                                                         reference_4: dict[str, Any]) -> None:
    """A read-only run folder (its checkpoints folder writable) is refused before anything is
    written, the resolved config included."""
    train_gan(gan_config(tmp_path, damsm_dir, 2, ["run.checkpoint_every=1", "run.keep_checkpoints=4"]))
    (tmp_path / "train_config.yaml").unlink()
    with read_only(tmp_path):
        with pytest.raises(ckpt.CheckpointError, match=rf"output folder {re.escape(str(tmp_path))} is not writable: "
                                                       "Permission denied"):
            train_gan(config(tmp_path, damsm_dir), resume=True)
    assert check_folder(tmp_path / "checkpoints") == 2 and not (tmp_path / "train_config.yaml").exists()
    resume_and_compare(tmp_path, damsm_dir, reference_4)


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_folder_turning_read_only(tmp_path: Path, damsm_dir: Path, reference_4: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    require_permissions(tmp_path)
    folder = tmp_path / "checkpoints"
    real = GANTrainer.after_step

    def after_step(self: GANTrainer) -> None:  # before the checkpoint of step 2
        real(self)
        if self.step == 2:
            folder.chmod(0o555)

    monkeypatch.setattr(GANTrainer, "after_step", after_step)
    try:
        with pytest.raises(ckpt.CheckpointError, match=rf"cannot write checkpoint {re.escape(str(folder))}/"
                                                       r"ckpt-00000002\.pt: Permission denied"):
            train_gan(config(tmp_path, damsm_dir))
    finally:
        folder.chmod(0o755)
    monkeypatch.undo()
    assert [p.name for p in ckpt.list_checkpoints(folder)] == ["ckpt-00000001.pt"] and not leftovers(tmp_path)
    assert check_folder(folder) == 1
    resume_and_compare(tmp_path, damsm_dir, reference_4)


# --------------------------------------------------------------------------- TensorBoard


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_tensorboard_failures_are_logged_and_training_goes_on(tmp_path: Path, damsm_dir: Path,
                                                              reference_4: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture, fault: str) -> None:
    calls: list[tuple[str, float, int]] = []

    class SummaryWriter:  # fails as the real one does: at creation (read-only) or on a write (full)
        def __init__(self, log_dir: str) -> None:
            if fault == "read-only":
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), log_dir)

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            if step == 2:
                raise ENOSPC
            calls.append((tag, value, step))

        def close(self) -> None:
            pass

    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = SummaryWriter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    with caplog.at_level(logging.ERROR, logger="attngan.training.loop"):
        train_gan(config(tmp_path, damsm_dir))
    reason = "No space left on device" if fault == "full" else "Permission denied"
    assert (f"cannot write TensorBoard events to {tmp_path / 'tensorboard'}: {reason}; TensorBoard mirroring "
            "stops, metrics.jsonl keeps every value and training goes on") in caplog.text
    assert caplog.text.count("cannot write TensorBoard") == 1
    assert {step for _, _, step in calls} == ({1} if fault == "full" else set())  # mirrored until it failed
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]
    assert_same_models(reference_4, final_models(tmp_path))
