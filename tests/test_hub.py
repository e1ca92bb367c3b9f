"""Model folders: save/load round trips."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
from pathlib import Path

import pytest
import torch

from attngan.config import ConfigError, DAMSMLossConfig
from attngan.hub import file_sha256, load_pretrained, save_pretrained, state_dict_of
from attngan.inference.pipeline import bundled_model_path

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


def test_example_captions_and_damsm_settings_round_trip(tmp_path: Path) -> None:
    bundle = make_tiny_bundle()
    bundle.metadata["example_captions"] = ["a small red circle", "a big blue square on the left"]
    bundle.config = dataclasses.replace(bundle.config, damsm=DAMSMLossConfig(gamma1=3.0, gamma2=6.0, weight=2.0))
    loaded = load_pretrained(save_pretrained(bundle, tmp_path / "m"))
    assert loaded.example_captions == ["a small red circle", "a big blue square on the left"]
    assert loaded.config.damsm == DAMSMLossConfig(gamma1=3.0, gamma2=6.0, gamma3=10.0, weight=2.0)
    assert make_tiny_bundle().example_captions == []  # a folder without examples has none


def test_folders_without_damsm_settings_get_the_originals(tmp_path: Path) -> None:
    path = save_pretrained(make_tiny_bundle(), tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    del config["model"]["damsm"]  # as written before the settings were recorded
    (path / "config.json").write_text(json.dumps(config))
    assert load_pretrained(path).config.damsm == DAMSMLossConfig(gamma1=4.0, gamma2=5.0, gamma3=10.0, weight=5.0)


@pytest.mark.parametrize("value,problem", [("a red circle", "must be a list"), ([""], r"example_captions\[0\]"),
                                           (["ok", 3], r"example_captions\[1\]"), (["x"] * 40, "at most 32")])
def test_bad_example_captions_are_refused_naming_the_field(tmp_path: Path, value: object, problem: str) -> None:
    path = save_pretrained(make_tiny_bundle(), tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    config["metadata"]["example_captions"] = value
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=problem) as refused:
        load_pretrained(path)
    assert str(refused.value).startswith(f"{path / 'config.json'}: metadata.example_captions")
    bundle = make_tiny_bundle()
    bundle.metadata["example_captions"] = value
    with pytest.raises(ConfigError, match=problem):
        save_pretrained(bundle, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_bundled_model_offers_examples_it_reads_whole() -> None:
    folder = bundled_model_path()
    config = json.loads((folder / "config.json").read_text())
    # the examples were added by editing config.json: the weights and their recorded hash are untouched
    assert config["weights_sha256"] == file_sha256(folder / "model.safetensors")
    bundle = load_pretrained(folder)  # checks that hash
    examples = bundle.example_captions
    assert len(examples) >= 4
    counts = {len(re.findall(r"\b(circle|square|triangle|star|heart|diamond|cross|hexagon)\b", c)) for c in examples}
    assert counts == {1, 2}  # one- and two-object captions
    for caption in examples:
        encoded = bundle.vocab.encode(caption, bundle.config.text_encoder.max_words)
        assert not encoded.dropped and not encoded.truncated, caption
    assert bundle.config.damsm == DAMSMLossConfig(weight=2.0)  # the shapes preset's settings
