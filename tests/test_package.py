"""The top-level API (``from attngan import ...``, imported lazily) and the README's Python examples."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import attngan

from .conftest import ROOT

SRC = Path(attngan.__file__).resolve().parents[1]  # the copy these tests import
README = ROOT / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python(code: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter from ``cwd``, with this checkout's package importable."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_import_attngan_loads_neither_torch_nor_a_submodule(tmp_path: Path) -> None:
    code = ("import sys, json, attngan\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('attngan', 'torch', 'numpy', 'PIL', 'safetensors', 'click', 'fastapi', 'huggingface_hub'))))")
    result = python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["attngan"]


def test_public_names_import_lazily_and_are_listed(tmp_path: Path) -> None:
    code = ("import sys, attngan\n"
            "from attngan import AttnGANPipeline, load_pretrained, save_pretrained, PipelineOutput, __version__\n"
            "assert 'attngan.inference.pipeline' in sys.modules and 'attngan.training.gan' not in sys.modules\n"
            "import attngan.inference.pipeline as p, attngan.hub as h\n"
            "assert AttnGANPipeline is p.AttnGANPipeline and PipelineOutput is p.PipelineOutput\n"
            "assert load_pretrained is h.load_pretrained and save_pretrained is h.save_pretrained\n"
            "print(__version__)")
    result = python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == attngan.__version__


def test_every_public_name_resolves_and_is_in_dir() -> None:
    from attngan import _EXPORTS  # type: ignore[attr-defined]

    assert sorted(attngan.__all__) == sorted(["__version__", *_EXPORTS])
    assert len(set(attngan.__all__)) == len(attngan.__all__)
    listed = dir(attngan)
    for name in attngan.__all__:
        assert name in listed
        value = getattr(attngan, name)
        if name != "__version__":  # defined in that module or one of its submodules
            assert value.__module__.startswith(f"attngan.{_EXPORTS[name]}"), name
            assert value is getattr(importlib.import_module(f"attngan.{_EXPORTS[name]}"), name), name
    namespace: dict[str, object] = {}
    exec("from attngan import *", namespace)
    assert set(attngan.__all__) <= set(namespace)
    assert "import_module" not in listed and "TYPE_CHECKING" not in listed


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'AttnGanPipeline'"):
        attngan.AttnGanPipeline  # noqa: B018
    assert not hasattr(attngan, "load_model")


def test_version_has_one_home() -> None:
    """``pyproject.toml`` reads the version from ``attngan/version.py`` (the wheel's name carries
    it: ``test_wheel.py``); no other file states it."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]$', pyproject, re.MULTILINE)
    assert re.search(r'^version = \{attr = "attngan\.version\.__version__"\}', pyproject, re.MULTILINE)
    assert not re.search(r'^version = "', pyproject, re.MULTILINE)
    from attngan.version import __version__

    assert attngan.__version__ == __version__ and re.fullmatch(r"\d+\.\d+\.\d+\S*", __version__)


# --------------------------------------------------------------------------- README
README_BLOCKS = PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))


def test_readme_has_python_examples() -> None:
    assert README_BLOCKS and "from attngan import" in README_BLOCKS[0]  # the parametrised test runs them


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_python_block_runs_as_written(index: int, tmp_path: Path) -> None:
    """Each ```python block of the README, pasted into a fresh interpreter in an empty folder."""
    block = README_BLOCKS[index]
    result = python(block, tmp_path, timeout=300)
    assert result.returncode == 0, f"README python block {index + 1} failed:\n{block}\n{result.stderr[-3000:]}"
