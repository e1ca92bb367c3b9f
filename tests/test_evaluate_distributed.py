"""``attngan evaluate`` under torchrun: two processes give the one-process results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from attngan.cli import main
from attngan.data import DataSpec
from attngan.metrics import save_classifier
from attngan.metrics.eval_data import train_data_classifier

RECIPE = {"targets": "scene-slots", "arch": "slots", "train_images": 64, "channels": 4, "feature_dim": 8, "epochs": 1,
          "batch_size": 32, "lr": 2e-3, "lr_schedule": "constant"}


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_processes_match_one(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNGAN_CACHE", str(tmp_path / "cache"))
    classifier = save_classifier(train_data_classifier(DataSpec("shapes"), recipe=RECIPE), tmp_path / "clf")
    args = ["evaluate", "--model", str(tiny_model_dir), "--num-samples", "22", "--batch-size", "4", "--seed", "5",
            "--classifier", str(classifier), "--device", "cpu", "--diversity-captions", "2", "--diversity-seeds", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATTNGAN_CACHE": str(tmp_path / "cache")}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "attngan", *args, "--out", str(tmp_path / "two.jsonl")],
                         capture_output=True, text=True, env=env, timeout=180)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    assert "2 processes" in two.stdout and two.stdout.count("appended 5 result line(s)") == 1
    one = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "one.jsonl")], catch_exceptions=False)
    assert one.exit_code == 0, one.output
    read = [[json.loads(line) for line in (tmp_path / f"{n}.jsonl").read_text().splitlines()] for n in ("one", "two")]
    assert [r["metric"] for r in read[0]] == [r["metric"] for r in read[1]]
    for a, b in zip(*read):
        assert a["num_samples"] == b["num_samples"] == (4 if a["metric"] == "diversity" else 22)
        assert a["values"] == pytest.approx(b["values"], rel=1e-6, abs=1e-9)
