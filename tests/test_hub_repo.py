"""Models named by a Hugging Face Hub repo id (``org/name``), read offline from a cache laid out
as the Hub lays it out: ``models--org--name/{refs,snapshots,blobs}``."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attngan
from attngan.hub import (
    load_pretrained,
    looks_like_repo_id,
    resolve_model_folder,
    save_pretrained,
    state_dict_of,
)
from attngan.inference.pipeline import AttnGANPipeline

from .conftest import make_tiny_bundle

hf = pytest.importorskip("huggingface_hub")
hf_constants = pytest.importorskip("huggingface_hub.constants")

REPO = "org/tiny"
COMMIT_A = hashlib.sha1(b"first").hexdigest()  # refs/main
COMMIT_B = hashlib.sha1(b"second").hexdigest()  # refs/v2


def add_snapshot(cache: Path, repo: str, commit: str, folder: Path, refs: tuple[str, ...]) -> Path:
    """Put ``folder``'s files into the cache as snapshot ``commit`` of ``repo``: contents in
    ``blobs/``, linked from ``snapshots/<commit>/``; each ref in ``refs/`` names the commit."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    snapshot.mkdir(parents=True)
    for file in sorted(folder.iterdir()):
        data = file.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    for ref in refs:
        (root / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    cache = tmp_path_factory.mktemp("hf-cache")
    second = save_pretrained(make_tiny_bundle(seed=1), tmp_path_factory.mktemp("second") / "m")
    add_snapshot(cache, REPO, COMMIT_A, tiny_model_dir, ("main",))
    add_snapshot(cache, REPO, COMMIT_B, second, ("v2",))
    return cache


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No request leaves the machine: the Hub client in offline mode, as HF_HUB_OFFLINE=1 sets it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def same_weights(a: Path | str, b: Path) -> bool:
    sa, sb = state_dict_of(load_pretrained(a)), state_dict_of(load_pretrained(b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_repo_id_loads_the_main_snapshot(hub_cache: Path, tiny_model_dir: Path) -> None:
    pipe = AttnGANPipeline.from_pretrained(REPO, cache_dir=hub_cache)
    assert Path(pipe.bundle.metadata["path"]).name == COMMIT_A
    local = AttnGANPipeline.from_pretrained(tiny_model_dir)
    assert pipe.model_hash == local.model_hash
    a, b = pipe("a red circle", seed=3), local("a red circle", seed=3)
    assert torch.equal(a.images[-1], b.images[-1])


@pytest.mark.parametrize("revision", [COMMIT_B, "v2"])
def test_revision_selects_another_commit(hub_cache: Path, tiny_model_dir: Path, revision: str) -> None:
    bundle = load_pretrained(REPO, revision=revision, cache_dir=hub_cache)
    assert Path(bundle.metadata["path"]).name == COMMIT_B
    main = load_pretrained(REPO, cache_dir=hub_cache, local_files_only=True)
    assert main.metadata["sha256"] != bundle.metadata["sha256"]  # two different models
    assert same_weights(main.metadata["path"], tiny_model_dir)


def test_default_cache_is_the_hub_cache(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub_cache))
    assert resolve_model_folder(REPO).name == COMMIT_A


@pytest.mark.parametrize(("repo", "revision", "named"), [
    ("org/absent", None, "org/absent"),
    (REPO, "v3", "org/tiny (revision v3)"),
    (REPO, hashlib.sha1(b"third").hexdigest(), f"org/tiny (revision {hashlib.sha1(b'third').hexdigest()})"),
])
def test_absent_repo_or_revision_offline_is_an_error_naming_it(hub_cache: Path, repo: str, revision: str | None,
                                                               named: str) -> None:
    with pytest.raises(FileNotFoundError, match=r"Hugging Face Hub") as info:
        AttnGANPipeline.from_pretrained(repo, revision=revision, cache_dir=hub_cache)
    assert named in str(info.value)
    with pytest.raises(FileNotFoundError, match=repo):
        load_pretrained(repo, revision=revision, cache_dir=hub_cache, local_files_only=True)


def test_local_paths_never_reach_the_hub(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hub(*args: object, **kwargs: object) -> str:
        raise AssertionError("the Hub was asked for a local folder")

    monkeypatch.setattr(hf, "snapshot_download", no_hub)
    monkeypatch.chdir(tmp_path)
    save_pretrained(load_pretrained(tiny_model_dir), "org/tiny")  # a relative folder spelled like a repo id
    assert same_weights("org/tiny", tiny_model_dir)
    assert AttnGANPipeline.from_pretrained(Path("org") / "tiny").name == "tiny-test"
    for missing in (tmp_path / "absent", "./absent/model", "absent", Path("org/absent")):  # no repo id
        with pytest.raises(FileNotFoundError, match="model folder not found"):
            load_pretrained(missing)
    with pytest.raises(ValueError, match="revision='v2'.*local path"):
        load_pretrained(tiny_model_dir, revision="v2")


def test_without_huggingface_hub_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(FileNotFoundError, match=r"org/absent.*pip install 'attngan\[hub\]'"):
        load_pretrained("org/absent")


@pytest.mark.parametrize(("name", "expected"), [
    ("org/name", True), ("my-org/model.v2", True), ("a_b/c-d_e", True),
    ("name", False), ("/abs/path", False), ("./rel", False), ("../up/x", False), ("a/b/c", False),
    ("org/name.", False), ("org--x/name", False), ("org/na..me", False), ("~/models", False), ("org/", False),
])
def test_repo_id_spelling(name: str, expected: bool) -> None:
    assert looks_like_repo_id(name) is expected


# --------------------------------------------------------------------------- command line
def test_generate_and_serve_take_a_repo_id(hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from attngan.cli import main

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub_cache))
    result = CliRunner().invoke(main, ["generate", "a red circle", "--seed", "2", "--model", REPO,
                                       "--revision", "v2", "--out", str(tmp_path / "v2")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "v2").glob("*.png"))
    result = CliRunner().invoke(main, ["generate", "a red circle", "--model", "org/absent", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "org/absent" in result.output and "Traceback" not in result.output

    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("fastapi")
    apps: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    result = CliRunner().invoke(main, ["serve", "--model", REPO, "--revision", COMMIT_B])
    assert result.exit_code == 0, result.output
    assert Path(apps[0].state.attngan.pipeline.bundle.metadata["path"]).name == COMMIT_B  # type: ignore[attr-defined]


def test_generate_cli_offline_from_the_environment(hub_cache: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    """A fresh process told only HF_HUB_OFFLINE=1 and HF_HUB_CACHE: the same images as the local folder."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(attngan.__file__).resolve().parents[1])}
    args = [sys.executable, "-m", "attngan", "generate", "a small red circle on the left", "--seed", "0"]
    hub = subprocess.run([*args, "--model", REPO, "--out", str(tmp_path / "hub")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert hub.returncode == 0, hub.stderr
    local = subprocess.run([*args, "--model", str(tiny_model_dir), "--out", str(tmp_path / "local")], env=env,
                           capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr
    names = sorted(p.name for p in (tmp_path / "hub").glob("*.png"))
    assert len(names) == 4  # three stages and the attention sheet
    assert names == sorted(p.name for p in (tmp_path / "local").glob("*.png"))
    for name in names:
        assert (tmp_path / "hub" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
