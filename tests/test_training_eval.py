"""The periodic evaluation of a GAN run goes through the evaluation engine; a failing one is logged,
never fatal."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from attngan.training.gan import train_gan

from .test_training import damsm_dir, gan_config  # noqa: F401  (the tiny DAMSM fixture)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def test_periodic_evaluation_appends_records_with_the_step(tmp_path: Path, damsm_dir: Path,  # noqa: F811
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNGAN_CACHE", str(tmp_path / "cache"))
    cfg = gan_config(tmp_path / "run", damsm_dir, 2, [
        "run.eval_every=1", "eval.metrics=[r_precision, fd_damsm]", "eval.num_samples=6", "eval.batch_size=3",
        "eval.split=validation", "eval.data_extra={size: 12}"])
    train_gan(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "evaluations.jsonl").read_text().splitlines()]
    assert [(r["step"], r["metric"]) for r in records] == [(1, "r_precision"), (1, "fd_damsm"), (2, "r_precision"),
                                                           (2, "fd_damsm")]
    assert all(r["dataset"]["split"] == "validation" and r["num_samples"] == 6 for r in records)
    assert records[0]["generation"]["precision"] == "fp32" and records[0]["model"] == cfg.name
    assert 0.0 <= records[0]["values"]["r_precision"] <= 1.0


def test_a_failing_evaluation_is_logged_and_training_goes_on(tmp_path: Path, damsm_dir: Path,  # noqa: F811
                                                             caplog: pytest.LogCaptureFixture) -> None:
    cfg = gan_config(tmp_path / "run", damsm_dir, 2, ["run.eval_every=2", "eval.metrics=[fid]", "eval.num_samples=4"])
    with caplog.at_level(logging.ERROR, logger="attngan.training.gan"):
        model = train_gan(cfg)
    assert (model / "model.safetensors").is_file()
    assert "could not evaluate at step 2; training goes on" in caplog.text and "inception_weights" in caplog.text
    assert not (tmp_path / "run" / "evaluations.jsonl").exists()
