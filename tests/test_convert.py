"""`attngan convert`: original-layout checkpoints -> a model folder, bit-identical at the bird configuration."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from click.testing import CliRunner

from attngan.cli import main
from attngan.config import bird_config
from attngan.hub import legacy, load_pretrained
from attngan.inference.pipeline import AttnGANPipeline
from attngan.models import Generator, InceptionImageEncoder, TextEncoder


def _original_files(tmp_path: Path, drop_counters: bool) -> dict[str, Path]:
    cfg = bird_config(vocab_size=40)
    torch.manual_seed(0)
    modules = {
        "netG_epoch_600.pth": (Generator(cfg.generator), legacy.GENERATOR_RULES),
        "text_encoder200.pth": (TextEncoder(cfg.text_encoder), legacy.TEXT_ENCODER_RULES),
        "image_encoder200.pth": (InceptionImageEncoder(cfg.image_encoder), legacy.IMAGE_ENCODER_RULES),  # type: ignore[arg-type]
    }
    paths = {}
    for name, (module, rules) in modules.items():
        state = legacy.to_legacy(module.state_dict(), rules)
        state = {k: v.clone().normal_() if v.is_floating_point() else v for k, v in state.items()}
        if drop_counters:  # checkpoints of older torch versions lack the BatchNorm counters
            state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        torch.save(state, tmp_path / name)
        paths[name] = tmp_path / name
    words = ["<end>"] + [f"w{i}" for i in range(39)]
    ixtoword = dict(enumerate(words))
    with open(tmp_path / "captions.pickle", "wb") as f:
        pickle.dump([[[1, 2]], [[3]], ixtoword, {w: i for i, w in ixtoword.items()}], f, protocol=2)
    paths["captions"] = tmp_path / "captions.pickle"
    return paths


def _run_convert(paths: dict[str, Path], out: Path) -> None:
    result = CliRunner().invoke(main, [
        "convert", "--generator", str(paths["netG_epoch_600.pth"]), "--text-encoder", str(paths["text_encoder200.pth"]),
        "--image-encoder", str(paths["image_encoder200.pth"]), "--captions", str(paths["captions"]), "--out", str(out)])
    assert result.exit_code == 0, result.output


def test_bird_configuration_round_trip_is_bit_identical(tmp_path: Path) -> None:
    paths = _original_files(tmp_path, drop_counters=False)
    _run_convert(paths, tmp_path / "model")
    bundle = load_pretrained(tmp_path / "model")
    assert bundle.config.generator.legacy_mask_tiling  # converted models compute what the original computed
    assert bundle.vocab.words[1] == "w0" and len(bundle.vocab) == 40
    assert bundle.example_captions == ["w2"]  # from the pickle's test captions
    back = {
        "netG_epoch_600.pth": legacy.to_legacy(bundle.generator.state_dict(), legacy.GENERATOR_RULES),
        "text_encoder200.pth": legacy.to_legacy(bundle.text_encoder.state_dict(), legacy.TEXT_ENCODER_RULES),
        "image_encoder200.pth": legacy.to_legacy(bundle.image_encoder.state_dict(), legacy.IMAGE_ENCODER_RULES),  # type: ignore[union-attr]
    }
    for name, state in back.items():
        original = torch.load(paths[name], weights_only=True)
        assert original.keys() == state.keys(), name
        for k in original:
            assert original[k].dtype == state[k].dtype and torch.equal(original[k], state[k]), f"{name}: {k}"


def test_checkpoints_without_batchnorm_counters_convert_and_generate(tmp_path: Path) -> None:
    paths = _original_files(tmp_path, drop_counters=True)
    _run_convert(paths, tmp_path / "model")
    pipe = AttnGANPipeline.from_pretrained(tmp_path / "model")
    out = pipe("w1 w2 w3 unknown", seed=0, num_stages=1)
    assert out.images[0].shape == (1, 3, 64, 64)
    assert out.captions[0].dropped == ["unknown"]


def test_a_vocabulary_of_another_size_is_refused(tmp_path: Path) -> None:
    paths = _original_files(tmp_path, drop_counters=False)
    with open(paths["captions"], "wb") as f:
        pickle.dump([[], [], {0: "<end>", 1: "a"}, {"<end>": 0, "a": 1}], f, protocol=2)
    result = CliRunner().invoke(main, [
        "convert", "--generator", str(paths["netG_epoch_600.pth"]), "--text-encoder", str(paths["text_encoder200.pth"]),
        "--captions", str(paths["captions"]), "--out", str(tmp_path / "m")])
    assert result.exit_code != 0 and "vocabulary has 2 words" in result.output
    assert not (tmp_path / "m").exists()


def test_examples_are_spread_over_the_test_captions(tmp_path: Path) -> None:
    paths = _original_files(tmp_path, drop_counters=False)
    test_captions: list[object] = [[1 + k % 39, 2 + k % 37, 3] for k in range(600)]
    test_captions[0] = "not a caption"  # malformed entries are passed over
    test_captions[100] = [1, 99]  # an id the vocabulary lacks
    with open(paths["captions"], "rb") as f:
        train, _, ixtoword, wordtoix = pickle.load(f)
    with open(paths["captions"], "wb") as f:
        pickle.dump([train, test_captions, ixtoword, wordtoix], f, protocol=2)
    _run_convert(paths, tmp_path / "model")
    examples = load_pretrained(tmp_path / "model").example_captions
    assert examples == [" ".join(f"w{i - 1}" for i in test_captions[k]) for k in (200, 300, 400, 500, 12, 112)]
