"""Parity tests cannot silently vanish: without the golden files they fail under CI and skip elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import attngan

from .conftest import ROOT, in_ci

PARITY_TESTS = ["tests/test_golden.py", "tests/test_state_dict_keys.py"]


def run_parity_tests(tmp_path: Path, ci: str | None) -> tuple[int, dict[str, int]]:
    """Run the parity test files in a fresh pytest with an empty shared folder; the exit code and
    how many tests passed, failed (or errored) and were skipped."""
    shared = tmp_path / "shared"
    (shared / "golden").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(ATTNGAN_SHARED=str(shared), PYTHONPATH=str(Path(attngan.__file__).resolve().parents[1]),
               OMP_NUM_THREADS="1")
    if ci is not None:
        env["CI"] = ci
    report = tmp_path / f"report-{ci}.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *PARITY_TESTS]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            counts["failed"] += 1
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return result.returncode, counts


def test_missing_golden_files_fail_under_ci_and_skip_elsewhere(tmp_path: Path) -> None:
    ci_code, ci = run_parity_tests(tmp_path, "true")
    dev_code, dev = run_parity_tests(tmp_path, None)
    assert ci_code == 1 and ci["failed"] >= 10 and ci["skipped"] == 0, ci
    assert dev_code == 0 and dev["failed"] == 0, dev
    assert dev["skipped"] == ci["failed"] and dev["passed"] == ci["passed"]  # the same tests, failed or skipped


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("TRUE", True), ("false", False),
                                                 ("0", False), ("", False), (None, False)])
def test_ci_is_read_from_the_environment(value: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is expected
