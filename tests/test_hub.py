"""Model folders: save/load round trips."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import torch

from attngan.hub import load_pretrained, save_pretrained, state_dict_of

from .conftest import make_tiny_bundle


def test_round_trip_is_bit_identical(tmp_path: Path) -> None:
    bundle = make_tiny_bundle()
    loaded = load_pretrained(save_pretrained(bundle, tmp_path / "m"))
    a, b = state_dict_of(bundle), state_dict_of(loaded)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_float16_weights_load_into_float32_modules(tmp_path: Path) -> None:
    bundle = make_tiny_bundle()
    path = save_pretrained(bundle, tmp_path / "half", weights_dtype="float16")
    full = save_pretrained(bundle, tmp_path / "full")
    assert (path / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded = load_pretrained(path)
    a, b = state_dict_of(bundle), state_dict_of(loaded)
    for k in a:
        assert b[k].dtype == a[k].dtype, k
        if a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], atol=1e-2, rtol=1e-3), k
    assert loaded.metadata["weights_dtype"] == "float16"


def test_model_folder_gets_the_umask_permissions_of_plain_files(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = save_pretrained(make_tiny_bundle(), tmp_path / "m")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    for name in ("config.json", "model.safetensors", "vocab.json"):
        assert stat.S_IMODE((path / name).stat().st_mode) == 0o644, name


def test_saving_over_a_model_folder_keeps_its_other_files(tmp_path: Path) -> None:
    path = save_pretrained(make_tiny_bundle(), tmp_path / "m")
    (path / "MODEL_CARD.md").write_text("# card\n")
    (path / "samples").mkdir()
    (path / "samples" / "a.png").write_bytes(b"png")
    before = (path / "model.safetensors").read_bytes()
    save_pretrained(make_tiny_bundle(), path, weights_dtype="float16")
    assert (path / "MODEL_CARD.md").read_text() == "# card\n"
    assert (path / "samples" / "a.png").read_bytes() == b"png"
    assert (path / "model.safetensors").read_bytes() != before
    assert load_pretrained(path).metadata["weights_dtype"] == "float16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folder left behind
