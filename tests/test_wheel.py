"""The wheel carries everything the package needs (bundled model, presets, web files) and works
installed on its own: ``python -m attngan generate`` and ``attngan serve`` from the installed copy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

import attngan

from .conftest import ROOT

pytestmark = pytest.mark.slow
SRC = ROOT / "src" / "attngan"


def package_files() -> set[str]:
    """Every file of the source package, as a path inside the wheel."""
    return {p.relative_to(SRC.parent).as_posix() for p in SRC.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(wheel, target)``: the wheel built from a clean copy of the checkout, installed into ``target``."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"  # a copy, so that no build output lands in the checkout
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(SRC, tree / "src" / "attngan", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", str(tree), "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list((tmp / "dist").glob("attngan-*.whl"))
    assert len(wheels) == 1, wheels
    target = tmp / "site"
    done = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheels[0])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return wheels[0], target


def env_for(target: Path) -> dict[str, str]:
    """The installed copy alone on the path (the dependencies come from this interpreter)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ATTNGAN_API_KEY")}
    return {**env, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_wheel_carries_the_model_presets_and_web_files(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    assert wheel.name.startswith(f"attngan-{attngan.__version__}-")  # pyproject reads attngan/version.py
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("attngan/assets/shapes-64/model.safetensors", "attngan/assets/shapes-64/config.json",
                     "attngan/assets/shapes-64/vocab.json", "attngan/configs/shapes.yaml",
                     "attngan/server/static/index.html", "attngan/server/static/app.js"):
        assert required in names
    assert sorted(package_files() - names) == []  # every file of the package, none left behind
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "benchmarks/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "attngan = attngan.cli:entry" in zipfile.ZipFile(wheel).read(entry_points).decode()
    with zipfile.ZipFile(wheel) as zf:  # the weights are the real ones, not a pointer
        assert zf.read("attngan/assets/shapes-64/model.safetensors") == \
            (SRC / "assets" / "shapes-64" / "model.safetensors").read_bytes()


def test_installed_copy_generates(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, target = installed
    env = env_for(target)
    where = subprocess.run([sys.executable, "-c", "import attngan, attngan.inference.pipeline as p; "
                            "print(attngan.__file__); print(p.bundled_model_path())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    module, model = where.stdout.split()
    assert Path(module).is_relative_to(target) and Path(model).is_relative_to(target)
    out = tmp_path / "X"
    result = subprocess.run([sys.executable, "-m", "attngan", "generate", "a small red circle on the left",
                             "--seed", "0", "--out", str(out)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    pngs = sorted(p.name for p in out.glob("*.png"))
    stem = "a-small-red-circle-on-the-left_0"
    assert pngs == [f"{stem}_{size}.png" for size in (16, 32, 64)] + [f"{stem}_attention.png"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


def test_installed_script_serves_the_page_and_generates(installed: tuple[Path, Path], tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    _, target = installed
    script = target / "bin" / "attngan"
    assert script.exists()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(script), "serve", "--port", str(port)], cwd=tmp_path, env=env_for(target),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                if fetch(base + "/readyz")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.25)
        status, page = fetch(base + "/")
        assert status == 200 and b"<html" in page.lower()
        status, script_file = fetch(base + "/static/app.js")
        assert status == 200 and script_file == (SRC / "server" / "static" / "app.js").read_bytes()
        status, body = fetch(base + "/v1/generate", {"caption": "a small red circle on the left", "seed": 0})
        assert status == 200
        answer = json.loads(body)
        assert answer["seed"] == 0 and answer["tokens"] and len(answer["images"]) == 1
        status, body = fetch(base + "/v1/model")
        bundled = json.loads((SRC / "assets" / "shapes-64" / "config.json").read_text())
        assert status == 200 and json.loads(body)["name"] == bundled["model"]["name"]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout:
            server.stdout.close()
