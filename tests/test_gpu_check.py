"""``benchmarks/gpu_check.py`` rehearsed on the CPU with tiny sizes: the generation and training
sections run and none fails. The evaluation section (it trains the shapes classifier) and the
``torch.compile`` section (inductor compiles C++ on a CPU) take minutes here and are skipped; run
``python benchmarks/gpu_check.py --device cpu --tiny`` for the whole rehearsal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_gpu_check_rehearsal_on_the_cpu(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny",
                           "--skip", "evaluate,compile", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "errors" not in res
    assert set(res["generate"]) == {"fp32", "bf16"} and res["generate"]["fp32"]["psnr_vs_exact_db"] > 40
    assert {(r["case"], r["precision"]) for r in res["train"]} == {("shapes", "fp32"), ("shapes", "bf16")}
    assert all(r["s_per_step"] > 0 for r in res["train"])
