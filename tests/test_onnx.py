"""ONNX export and the ONNX Runtime backend: parity with the torch modules."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from attngan.config import GeneratorConfig, ModelConfig, TextEncoderConfig
from attngan.hub import build_bundle
from attngan.inference.pipeline import AttnGANPipeline
from attngan.models.text_encoder import TextEncoder
from attngan.text import PAD_TOKEN, Vocabulary, pad_batch

from .conftest import TINY_WORDS

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from attngan.inference.onnx import (  # noqa: E402
    META_NAME,
    ExportableTextEncoder,
    OnnxBackend,
    default_onnx_dir,
    export_onnx,
    weights_fingerprint,
)

CAPTIONS = [
    "red",
    "a small blue square",
    "a big green triangle on the right of the image bottom center tiny large",  # truncated to 12 words
    "yellow circle on the left xyzzy",
]
TOL = 1e-4


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private copy of the tiny model, with a private cache (``$ATTNGAN_CACHE``) for its exports."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTNGAN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("onnx") / "tiny"))


@pytest.fixture(scope="module")
def pipes(model_dir: Path) -> tuple[AttnGANPipeline, AttnGANPipeline]:
    return (AttnGANPipeline.from_pretrained(model_dir, precision="fp32"),
            AttnGANPipeline.from_pretrained(model_dir, backend="onnx"))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("rnn_type,num_layers,bidirectional",
                         [("lstm", 1, True), ("lstm", 2, True), ("gru", 2, True), ("lstm", 1, False)])
@torch.no_grad()
def test_exportable_text_encoder_equals_packed(rnn_type: str, num_layers: int, bidirectional: bool) -> None:
    torch.manual_seed(0)
    config = TextEncoderConfig(vocab_size=30, word_embedding_dim=12, hidden_dim=10, rnn_type=rnn_type,
                               num_layers=num_layers, bidirectional=bidirectional, max_words=18)
    encoder = TextEncoder(config).eval()
    wrapper = ExportableTextEncoder(encoder)
    ids = [[3, 4, 5], [7], list(range(1, 19)), [9, 2, 8, 8, 4, 1], [5, 5]]
    tokens, lengths = pad_batch(ids)
    words, sentence = encoder(tokens, lengths)
    words2, sentence2 = wrapper(tokens, lengths)
    assert max_diff(words, words2) <= 1e-5 and max_diff(sentence, sentence2) <= 1e-5
    # extra padding columns change nothing
    wide, _ = pad_batch(ids, length=24)
    words3, sentence3 = wrapper(wide, lengths)
    assert max_diff(words3[:, :, :18], words) <= 1e-5 and max_diff(sentence3, sentence) <= 1e-5
    assert words3[:, :, 18:].abs().max() == 0


def test_export_folder(pipes: tuple[AttnGANPipeline, AttnGANPipeline], model_dir: Path,
                       tiny_model_dir: Path) -> None:
    folder = default_onnx_dir(pipes[0].bundle)
    assert folder.parent == Path(os.environ["ATTNGAN_CACHE"]) / "onnx"
    meta = json.loads((folder / META_NAME).read_text())
    assert meta["opset"] >= 17 and meta["weights"] == weights_fingerprint(pipes[0].bundle)
    for name, dynamic in (("text_encoder.onnx", {"tokens": ("batch", "words")}),
                          ("generator.onnx", {"words": ("batch", None, "words"), "mask": ("batch", "words")})):
        model = onnx.load(str(folder / name))
        onnx.checker.check_model(model)
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
        inputs = {i.name: [d.dim_param or None for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
        for input_name, dims in dynamic.items():
            assert tuple(inputs[input_name]) == dims
    assert pipes[1].backend.name == "onnx"
    # the model folder is left as it was
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(p.name for p in tiny_model_dir.iterdir())


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_onnx_pipeline_matches_torch(pipes: tuple[AttnGANPipeline, AttnGANPipeline], batch_size: int) -> None:
    torch_pipe, onnx_pipe = pipes
    expected = torch_pipe(CAPTIONS, num_images=2, seed=11, return_intermediates=True)
    actual = onnx_pipe(CAPTIONS, num_images=2, seed=11, return_intermediates=True, batch_size=batch_size)
    assert actual.settings["backend"] == "onnx" and actual.seeds == expected.seeds
    assert len(actual.images) == 3 and len(actual.attention_maps) == 2
    for a, b in zip(actual.images, expected.images, strict=True):
        assert max_diff(a, b) <= TOL
    for a, b in zip(actual.attention_maps, expected.attention_maps, strict=True):
        assert max_diff(a, b) <= TOL
    for key in ("word_features", "sentence_features", "mu", "condition"):
        assert max_diff(actual.intermediates[key], expected.intermediates[key]) <= TOL, key


def test_onnx_pipeline_fewer_stages(pipes: tuple[AttnGANPipeline, AttnGANPipeline]) -> None:
    torch_pipe, onnx_pipe = pipes
    expected = torch_pipe(CAPTIONS[:2], seed=5, num_stages=2)
    actual = onnx_pipe(CAPTIONS[:2], seed=5, num_stages=2)
    assert [t.shape[-1] for t in actual.images] == [16, 32] and len(actual.attention_maps) == 1
    assert max_diff(actual.images[-1], expected.images[-1]) <= TOL
    with pytest.raises(ValueError, match="num_stages"):
        onnx_pipe("red", num_stages=4)
    with pytest.raises(ValueError, match="ONNX backend runs in fp32"):
        onnx_pipe.set_precision("bf16")
    assert onnx_pipe.precision == "fp32" and onnx_pipe.set_precision("auto").precision == "fp32"


def test_cache_is_reused_and_refreshed(pipes: tuple[AttnGANPipeline, AttnGANPipeline], model_dir: Path,
                                       tmp_path: Path) -> None:
    meta = default_onnx_dir(pipes[0].bundle) / META_NAME
    stamp = meta.stat().st_mtime_ns
    AttnGANPipeline.from_pretrained(model_dir, backend="onnx")
    assert meta.stat().st_mtime_ns == stamp  # same weights: no new export

    changed = AttnGANPipeline.from_pretrained(model_dir)
    with torch.no_grad():
        changed.bundle.generator.to_image[-1].conv.weight.mul_(1.5)
    folder = tmp_path / "explicit"
    changed.export_onnx(folder)
    before = (folder / META_NAME).read_text()
    changed.bundle.generator.to_image[-1].conv.weight.data.mul_(2.0)
    changed.use_backend("onnx", folder)  # stale folder: exported again
    assert (folder / META_NAME).read_text() != before
    expected = changed.use_backend("fast").set_precision("fp32")("a red circle", seed=2).images[-1]
    actual = changed.use_backend("onnx", folder)("a red circle", seed=2).images[-1]
    assert max_diff(actual, expected) <= TOL


def test_a_backend_object_is_handed_over(pipes: tuple[AttnGANPipeline, AttnGANPipeline], tmp_path: Path) -> None:
    """``pipe.backend = OnnxBackend(folder)`` and ``AttnGANPipeline(..., backend=...)``, as diffusers
    hands over a scheduler; a folder exported from other weights is refused, changing nothing."""
    from attngan.errors import SettingError
    from attngan.inference.backends import FastBackend, ReferenceBackend

    torch_pipe = pipes[0]
    folder = torch_pipe.export_onnx(tmp_path / "exported")
    pipe = AttnGANPipeline(torch_pipe.bundle, backend=OnnxBackend(folder))
    assert pipe.backend.name == "onnx" and pipe.settings["backend"] == "onnx" and pipe.precision == "fp32"
    expected = torch_pipe("a red circle", seed=2).images[-1]
    assert max_diff(pipe("a red circle", seed=2).images[-1], expected) <= TOL
    pipe.backend = ReferenceBackend()
    assert pipe.exact and pipe.settings["backend"] == "reference"
    pipe.backend = OnnxBackend(folder)
    assert max_diff(pipe("a red circle", seed=2).images[-1], expected) <= TOL
    pipe.backend = FastBackend()
    assert pipe.backend.name == "fast" and not pipe.exact
    other = AttnGANPipeline.from_pretrained(Path(torch_pipe.bundle.metadata["path"]))
    with torch.no_grad():
        other.bundle.generator.to_image[-1].conv.weight.mul_(1.5)
    with pytest.raises(SettingError, match="exported from other weights") as caught:
        other.backend = OnnxBackend(folder)
    assert caught.value.field == "backend" and other.backend.name == "fast"
    with pytest.raises(SettingError, match="exact") as caught:
        AttnGANPipeline(torch_pipe.bundle, exact=True, backend="onnx")
    assert caught.value.field == "exact"


def test_backend_errors(tmp_path: Path, pipes: tuple[AttnGANPipeline, AttnGANPipeline]) -> None:
    with pytest.raises(FileNotFoundError, match="onnx.json"):
        OnnxBackend(tmp_path)
    with pytest.raises(ValueError, match="backend"):
        pipes[0].use_backend("tensorrt")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(pipes[0].bundle, tmp_path / "x", opset=13)


def test_spectral_norm_self_attention_gru_model(tmp_path: Path) -> None:
    """Parametrized weights, self-attention, legacy mask tiling and a 2-layer GRU export too."""
    torch.manual_seed(1)
    vocab = Vocabulary([PAD_TOKEN, *TINY_WORDS])
    config = ModelConfig(
        text_encoder=TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=16, hidden_dim=16, max_words=12,
                                       rnn_type="gru", num_layers=2),
        generator=GeneratorConfig(text_dim=16, condition_dim=8, noise_dim=8, channels=8, num_residual=1,
                                  num_stages=2, first_stage_size=16, self_attention=True, spectral_norm=True,
                                  legacy_mask_tiling=True, condition_modulation=True),
        name="tiny-variant")
    bundle = build_bundle(config, vocab)
    with torch.no_grad():
        for module in bundle.modules().values():
            for p in module.parameters():
                p.add_(0.1 * torch.randn_like(p))  # non-zero self-attention gates
    torch_pipe = AttnGANPipeline(bundle, precision="fp32")
    onnx_pipe = AttnGANPipeline(bundle).use_backend("onnx", tmp_path / "onnx")
    expected = torch_pipe(CAPTIONS, seed=4)
    actual = onnx_pipe(CAPTIONS, seed=4)
    for a, b in zip(actual.images + actual.attention_maps, expected.images + expected.attention_maps, strict=True):
        assert max_diff(a, b) <= TOL
