"""Damaged files: resume checkpoints, model folders and DAMSM folders give errors naming the
file (and field), and a damaged newest checkpoint never hides the good one before it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from attngan.config import ConfigError, ImageEncoderConfig, TextEncoderConfig
from attngan.hub import (
    CONFIG_NAME,
    VOCAB_NAME,
    WEIGHTS_NAME,
    DAMSMEncoders,
    load_damsm,
    load_pretrained,
    save_damsm,
)
from attngan.models.image_encoder import build_image_encoder
from attngan.models.text_encoder import TextEncoder
from attngan.text import PAD_TOKEN, Vocabulary
from attngan.training import checkpoint as ckpt

from .conftest import TINY_WORDS

# --------------------------------------------------------------------------- resume checkpoints


def _state(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    return {"step": step, "models": {"w": torch.randn(64, 64, generator=g)}, "rng": ckpt.rng_state()}


def _three(folder: Path) -> list[Path]:
    return [ckpt.save_checkpoint(folder, s, _state(s), keep=3) for s in (1, 2, 3)]


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["truncate", "flip-data", "flip-pickle", "zero", "garbage"])
def test_damaged_checkpoint_is_refused_and_the_previous_one_used(tmp_path: Path, damage: str) -> None:
    paths = _three(tmp_path)
    newest = paths[-1]
    raw = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(raw[: len(raw) * 2 // 3])
    elif damage == "flip-data":  # inside the tensor bytes: torch.load alone would not notice
        _flip(newest, len(raw) // 2)
    elif damage == "flip-pickle":
        _flip(newest, 100)
    elif damage == "zero":
        newest.write_bytes(b"")
    else:
        newest.write_bytes(b"not a checkpoint at all\n" * 50)
    with pytest.raises(ckpt.CheckpointError, match=rf"{newest.name} is (truncated or )?corrupt"):
        ckpt.load_checkpoint(newest)
    found = ckpt.latest_checkpoint(tmp_path)
    assert found is not None and found[0] == paths[1]
    assert torch.equal(found[1]["models"]["w"], _state(2)["models"]["w"])


def test_every_checkpoint_damaged_means_no_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for path in _three(tmp_path):
        path.write_bytes(path.read_bytes()[:50])
    assert ckpt.latest_checkpoint(tmp_path) is None
    assert caplog.text.count("truncated or corrupt") == 3


def test_missing_checkpoint_and_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match=r"not found: .*ckpt-00000009\.pt"):
        ckpt.load_checkpoint(tmp_path / "ckpt-00000009.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "ckpt-00000001.pt")  # a torch file, not ours
    with pytest.raises(ckpt.CheckpointError, match=r"ckpt-00000001\.pt is not an attngan resume checkpoint"):
        ckpt.load_checkpoint(tmp_path / "ckpt-00000001.pt")


def test_resume_past_a_damaged_newest_keeps_the_fresh_checkpoints(tmp_path: Path) -> None:
    """keep=1 and a corrupt ckpt-3: resuming from 2 must not delete what it writes next."""
    for s in (2, 3):
        ckpt.save_checkpoint(tmp_path, s, _state(s), keep=2)
    (tmp_path / "ckpt-00000003.pt").write_bytes(b"\0" * 100)
    found = ckpt.latest_checkpoint(tmp_path)
    assert found is not None and found[1]["step"] == 2
    ckpt.save_checkpoint(tmp_path, 3, _state(3), keep=1)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["ckpt-00000003.pt"]
    assert ckpt.load_checkpoint(tmp_path / "ckpt-00000003.pt")["step"] == 3
    (tmp_path / "ckpt-00000009.pt").write_bytes(b"\0" * 100)  # a leftover from an abandoned run
    ckpt.save_checkpoint(tmp_path, 4, _state(4), keep=1)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["ckpt-00000004.pt"]


def test_temporary_files_of_killed_writes_are_cleaned_up(tmp_path: Path) -> None:
    ckpt.save_checkpoint(tmp_path, 1, _state(1))
    stale = tmp_path / ".ckpt-00000002.pt.abc123.tmp"
    stale.write_bytes(b"PK\3\4 half a checkpoint")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["ckpt-00000001.pt"]  # never listed
    ckpt.save_checkpoint(tmp_path, 2, _state(2))
    assert not stale.exists() and not list(tmp_path.glob(".*.tmp"))


# --------------------------------------------------------------------------- model folders


@pytest.fixture
def model_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def _edit_config(folder: Path, edit) -> None:  # noqa: ANN001
    data = json.loads((folder / CONFIG_NAME).read_text())
    edit(data)
    (folder / CONFIG_NAME).write_text(json.dumps(data))


def test_intact_folder_loads_and_records_the_weights_hash(model_dir: Path) -> None:
    config = json.loads((model_dir / CONFIG_NAME).read_text())
    assert len(config["weights_sha256"]) == 64
    assert load_pretrained(model_dir).metadata["sha256"] == config["weights_sha256"][:16]


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "header"])
def test_damaged_weights_name_the_file(model_dir: Path, damage: str) -> None:
    weights = model_dir / WEIGHTS_NAME
    raw = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":  # inside a tensor: safetensors alone would load it
        _flip(weights, len(raw) - 1000)
    elif damage == "empty":
        weights.write_bytes(b"")
    else:
        _flip(weights, 20)
    with pytest.raises(ValueError, match=rf"{weights}.* is truncated or corrupt"):
        load_pretrained(model_dir)
    _edit_config(model_dir, lambda c: c.pop("weights_sha256"))  # folders of older versions: no hash
    if damage == "flip":
        load_pretrained(model_dir)  # nothing left to tell it apart
    else:
        with pytest.raises(ValueError, match=rf"{weights} is truncated or corrupt"):
            load_pretrained(model_dir)


def test_weights_of_another_folder(model_dir: Path, tmp_path: Path) -> None:
    from attngan.hub import save_pretrained

    from .conftest import make_tiny_bundle

    other = save_pretrained(make_tiny_bundle(seed=1), tmp_path / "other")
    shutil.copy(other / WEIGHTS_NAME, model_dir / WEIGHTS_NAME)
    with pytest.raises(ValueError, match="SHA-256 is not the one .*config.json records"):
        load_pretrained(model_dir)


@pytest.mark.parametrize("text, message", [
    ('{"format": "attngan", ', "is not valid JSON"),
    (b"\xff\xfe\x00binary", "is not valid JSON"),
    ("[1, 2]", "is not an attngan model folder"),
    ("", "is not valid JSON"),
])
def test_unreadable_config_json(model_dir: Path, text: str | bytes, message: str) -> None:
    file = model_dir / CONFIG_NAME
    file.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=rf"{file}.*{message}|{file}: {message}"):
        load_pretrained(model_dir)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"]["text_encoder"].update(hidden_dim="16"), r"text_encoder\.hidden_dim: expected int, got str"),
    (lambda c: c["model"]["generator"].update(channels=8.5), r"generator\.channels: expected int, got float"),
    (lambda c: c["model"]["text_encoder"].update(bidirectional="yes"), r"bidirectional: expected bool"),
    (lambda c: c["model"].update(name=3), r"name: expected str"),
    (lambda c: c["model"].update(image_encoder=[1]), r"image_encoder: expected a mapping"),
    (lambda c: c.update(model="tiny"), r"model config: expected a mapping"),
    (lambda c: c["model"]["generator"].update(colour="red"), r"generator: unknown field\(s\) colour"),
    (lambda c: c["model"].update(extra=1), r"model config: unknown field\(s\) extra"),
    (lambda c: c.update(checksum="x"), r"unknown field\(s\) checksum"),
    (lambda c: c.update(format_version="one"), r"format_version must be an integer"),
    (lambda c: c.update(format_version=99), r"has format_version 99"),
    (lambda c: c.update(metadata=[1, 2]), r"metadata must be an object"),
    (lambda c: c.pop("model"), r"missing field model"),
    (lambda c: c["model"]["text_encoder"].pop("vocab_size"), r"text_encoder\.vocab_size is 0|vocab_size"),
])
def test_bad_config_fields_name_file_and_field(model_dir: Path, edit, message: str) -> None:  # noqa: ANN001
    _edit_config(model_dir, edit)
    with pytest.raises(ValueError, match=message) as info:
        load_pretrained(model_dir)
    assert str(model_dir) in str(info.value)


def test_missing_files_are_named(model_dir: Path) -> None:
    (model_dir / VOCAB_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=rf"vocabulary not found: {model_dir / VOCAB_NAME}"):
        load_pretrained(model_dir)
    shutil.rmtree(model_dir)
    model_dir.mkdir()
    with pytest.raises(FileNotFoundError, match=rf"{model_dir / CONFIG_NAME} not found"):
        load_pretrained(model_dir)


@pytest.mark.parametrize("words, message", [
    ([PAD_TOKEN, *TINY_WORDS, "extra"], r"vocab\.json has 23 words but .*config\.json says text_encoder\.vocab_size 22"),
    ([PAD_TOKEN, *TINY_WORDS[:-1]], r"vocab\.json has 21 words"),
    ([*TINY_WORDS, PAD_TOKEN], r"vocab\.json: a vocabulary must start with '<end>'"),
    ([PAD_TOKEN, "a", "a"], r"vocab\.json: duplicate word in vocabulary: 'a'"),
    ([PAD_TOKEN, 3], r"vocab\.json: every word must be a string"),
])
def test_vocabulary_that_disagrees_with_the_weights(model_dir: Path, words: list, message: str) -> None:
    (model_dir / VOCAB_NAME).write_text(json.dumps({"words": words}))
    with pytest.raises(ValueError, match=message) as info:
        load_pretrained(model_dir)
    assert str(model_dir / VOCAB_NAME) in str(info.value)


def test_unreadable_vocabulary(model_dir: Path) -> None:
    (model_dir / VOCAB_NAME).write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ValueError, match=rf"cannot read vocabulary {model_dir / VOCAB_NAME}"):
        load_pretrained(model_dir)


# --------------------------------------------------------------------------- DAMSM folders


@pytest.fixture
def damsm_dir(tmp_path: Path) -> Path:
    vocab = Vocabulary([PAD_TOKEN, *TINY_WORDS])
    te = TextEncoder(TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=8, hidden_dim=8))
    ie = build_image_encoder(ImageEncoderConfig(kind="light", embedding_dim=8, image_size=32, light_channels=4))
    return save_damsm(DAMSMEncoders(te, ie, vocab, {"steps": 0}), tmp_path / "damsm")


def test_damsm_folder_faults_name_the_file(damsm_dir: Path) -> None:
    assert load_damsm(damsm_dir).text_encoder.config.hidden_dim == 8
    weights, config, vocab = damsm_dir / WEIGHTS_NAME, damsm_dir / CONFIG_NAME, damsm_dir / VOCAB_NAME
    good = {p: p.read_bytes() for p in (weights, config, vocab)}

    _flip(weights, weights.stat().st_size - 100)
    with pytest.raises(ValueError, match=rf"{weights} is truncated or corrupt"):
        load_damsm(damsm_dir)
    weights.write_bytes(good[weights])

    for edit, message in [
        (lambda c: c.pop("image_encoder"), r"missing field image_encoder"),
        (lambda c: c["text_encoder"].update(hidden_dim=[8]), r"text_encoder\.hidden_dim: expected int"),
        (lambda c: c["image_encoder"].update(depth=3), r"image_encoder: unknown field\(s\) depth"),
        (lambda c: c.update(format="attngan"), r"is not a DAMSM folder"),
    ]:
        _edit_config(damsm_dir, edit)
        with pytest.raises(ValueError, match=message) as info:
            load_damsm(damsm_dir)
        assert str(config) in str(info.value)
        config.write_bytes(good[config])

    vocab.write_text(json.dumps({"words": [PAD_TOKEN, "only"]}))
    with pytest.raises(ConfigError, match=rf"{vocab} has 2 words but .*says vocab_size 22"):
        load_damsm(damsm_dir)
    vocab.unlink()
    with pytest.raises(FileNotFoundError, match=rf"vocabulary not found: {vocab}"):
        load_damsm(damsm_dir)


# --------------------------------------------------------------------------- the commands that load folders


@pytest.mark.parametrize("command", ["generate", "serve"])
def test_commands_report_a_damaged_folder_without_a_traceback(model_dir: Path, tmp_path: Path, command: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from attngan.cli import main

    if command == "serve":
        uvicorn = pytest.importorskip("uvicorn")
        monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("served a damaged model"))
        args = ["serve", "--model", str(model_dir)]
    else:
        args = ["generate", "a red circle", "--model", str(model_dir), "--out", str(tmp_path / "out")]
    weights = model_dir / WEIGHTS_NAME
    _flip(weights, weights.stat().st_size - 500)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and f"{weights} is truncated or corrupt" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
