"""The precision policy on every CPU kind: fp32 parity, bf16 fidelity, and every entry point run in
bf16 with the native-bf16 probe forced (``ATTNGAN_NATIVE_BF16=1``), on a model with self-attention,
spectral norm and a two-layer GRU text encoder. Without native bf16 the bf16 arithmetic is
emulated (slow), so the models here are tiny."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from attngan import precision
from attngan.cli import main
from attngan.config import GeneratorConfig, ImageEncoderConfig, ModelConfig, TextEncoderConfig
from attngan.hub import build_bundle, save_pretrained
from attngan.inference.fast import FastSelfAttention
from attngan.inference.pipeline import AttnGANPipeline
from attngan.models.layers import SelfAttention
from attngan.precision import FORCE_ENV, autocast, dtype_of, hardware_bf16, native_bf16, resolve_precision
from attngan.text import PAD_TOKEN, Vocabulary

from .conftest import TINY_WORDS

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

CAPTIONS = ["a small red circle on the left", "blue square", "a big green triangle at the top of the image"]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of images in [-1, 1] (peak-to-peak 2)."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def make_variant_bundle(seed: int = 1, variant: str = "multi_stage"):  # noqa: ANN201
    """Self-attention, spectral norm, a two-layer GRU, a light DAMSM image encoder; random weights with
    non-zero self-attention gates."""
    torch.manual_seed(seed)
    vocab = Vocabulary([PAD_TOKEN, *TINY_WORDS])
    config = ModelConfig(
        text_encoder=TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=16, hidden_dim=16, max_words=12,
                                       rnn_type="gru", num_layers=2, dropout=0.0),
        generator=GeneratorConfig(text_dim=16, condition_dim=8, noise_dim=8, channels=8, num_residual=1,
                                  num_stages=3, first_stage_size=16, self_attention=True, spectral_norm=True,
                                  variant=variant),
        image_encoder=ImageEncoderConfig(kind="light", embedding_dim=16, image_size=64, light_channels=8),
        name="tiny-variant")
    bundle = build_bundle(config, vocab)
    with torch.no_grad():
        for module in bundle.modules().values():
            for p in module.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return bundle


@pytest.fixture(scope="module")
def variant_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_pretrained(make_variant_bundle(), tmp_path_factory.mktemp("variant") / "model")


@pytest.fixture
def forced_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` believes the CPU computes bf16 natively (as on AVX-512 BF16 / AMX machines)."""
    monkeypatch.setenv(FORCE_ENV, "1")


# --------------------------------------------------------------------------- the policy
@pytest.mark.parametrize(("avx512_bf16", "amx", "onednn", "native"), [
    (False, False, True, False),  # AVX-512 without its BF16 extension: oneDNN says yes, and emulates
    (True, False, True, True), (False, True, True, True), (True, True, False, False)])
def test_cpu_probe_asks_for_bf16_instructions(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool,
                                              onednn: bool, native: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: onednn)
    hardware_bf16.cache_clear()
    try:
        assert hardware_bf16("cpu") is native
        monkeypatch.delenv(FORCE_ENV, raising=False)
        assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    finally:
        hardware_bf16.cache_clear()


def test_policy_resolves_auto_from_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FORCE_ENV, "1")
    assert native_bf16("cpu") and resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setenv(FORCE_ENV, "0")
    assert not native_bf16("cpu") and resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp32", "cpu") == "fp32"
    assert dtype_of("bf16") is torch.bfloat16 and dtype_of("fp32") is torch.float32
    with pytest.raises(ValueError, match="'fp16'"):
        resolve_precision("fp16")
    with pytest.raises(ValueError, match="resolved"):
        dtype_of("auto")
    with autocast("bf16", "cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_fast_self_attention_matches_the_reference() -> None:
    torch.manual_seed(0)
    reference = SelfAttention(8, spectral=True)
    with torch.no_grad():
        reference.gamma.fill_(0.7)
    reference(torch.randn(2, 8, 8, 8))  # one power iteration in training mode, as a trained model has
    reference.eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        expected = reference(x)
        fast = FastSelfAttention(reference, torch.float32)(x.contiguous(memory_format=torch.channels_last))
        fast_bf16 = FastSelfAttention(reference, torch.bfloat16)(
            x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    assert (fast - expected).abs().max() <= 1e-5
    assert fast_bf16.dtype == torch.bfloat16 and (fast_bf16.float() - expected).abs().max() <= 0.05


@pytest.mark.parametrize("variant", ["multi_stage", "dcgan"])
def test_fast_path_parity_fp32_and_bf16(variant: str) -> None:
    """fp32: the fused twins equal the reference to 1e-5; bf16: to what bf16 promises (PSNR >= 40 dB)."""
    bundle = make_variant_bundle(variant=variant)
    exact = AttnGANPipeline(bundle, exact=True)(CAPTIONS, num_images=2, seed=7)
    fast32 = AttnGANPipeline(bundle, precision="fp32")(CAPTIONS, num_images=2, seed=7)
    fast16 = AttnGANPipeline(bundle, precision="bf16")(CAPTIONS, num_images=2, seed=7)
    assert exact.settings["precision"] == fast32.settings["precision"] == "fp32"
    assert fast16.settings["precision"] == "bf16"
    for a, b in zip(fast32.images + fast32.attention_maps, exact.images + exact.attention_maps, strict=True):
        assert (a - b).abs().max() <= 1e-5
    for a, b in zip(fast16.images, exact.images, strict=True):
        assert a.dtype == torch.float32 and psnr(a, b) >= 40.0
    for a, b in zip(fast16.attention_maps, exact.attention_maps, strict=True):
        assert (a - b).abs().max() <= 0.02  # probabilities


def test_exact_and_onnx_are_fp32_always(forced_bf16: None, variant_dir: Path) -> None:
    assert AttnGANPipeline.from_pretrained(variant_dir, exact=True).precision == "fp32"
    with pytest.raises(ValueError, match="exact path runs in fp32"):
        AttnGANPipeline.from_pretrained(variant_dir, precision="bf16", exact=True)
    assert AttnGANPipeline.from_pretrained(variant_dir).precision == "bf16"


# --------------------------------------------------------------------------- entry points in bf16
def test_generate_cli_in_bf16(forced_bf16: None, variant_dir: Path, tmp_path: Path) -> None:
    export = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(main, ["generate", CAPTIONS[0], "-n", "2", "--seed", "3", "--model", str(variant_dir),
                                       "--out", str(tmp_path / "png"), "--export", str(export)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert len(rows) == 2 and {r["settings"]["precision"] for r in rows} == {"bf16"}
    assert len(list((tmp_path / "png").glob("*.png"))) >= 2


def test_serve_in_bf16(forced_bf16: None, variant_dir: Path) -> None:
    pytest.importorskip("fastapi")
    from attngan.server import ServerSettings, create_app

    from .test_server_support import make_test_client

    pipeline = AttnGANPipeline.from_pretrained(variant_dir)
    with make_test_client(create_app(pipeline, ServerSettings(batch_wait_ms=2))) as client:
        r = client.post("/v1/generate", json={"caption": CAPTIONS[1], "num_images": 2, "seed": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["settings"]["precision"] == "bf16" and len(body["images"]) == 2
        assert client.post("/v1/explain", json={"caption": CAPTIONS[0], "seed": 1}).status_code == 200


def test_onnx_export_is_fp32_on_a_bf16_host(forced_bf16: None, variant_dir: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    result = CliRunner().invoke(main, ["export-onnx", "--model", str(variant_dir), "--out", str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.output
    for name in ("text_encoder.onnx", "generator.onnx"):
        graph = onnx.load(str(tmp_path / "onnx" / name)).graph
        floats = [i for i in graph.input if i.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT,
                                                                             onnx.TensorProto.BFLOAT16)]
        assert floats or name == "text_encoder.onnx"
        assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in floats)
        assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in graph.output)
    onnx_pipe = AttnGANPipeline.from_pretrained(variant_dir, backend="onnx", onnx_dir=tmp_path / "onnx")
    assert onnx_pipe.precision == "fp32"  # auto resolves to fp32 for ONNX Runtime, whatever the host
    expected = AttnGANPipeline.from_pretrained(variant_dir, exact=True)(CAPTIONS, seed=2)
    actual = onnx_pipe(CAPTIONS, seed=2)
    assert actual.settings["backend"] == "onnx" and actual.settings["precision"] == "fp32"
    for a, b in zip(actual.images, expected.images, strict=True):
        assert (a - b).abs().max() <= 1e-4


def test_evaluate_in_bf16(forced_bf16: None, variant_dir: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    from attngan.data import DataSpec
    from attngan.metrics import EvalConfig, run_evaluation

    monkeypatch.setenv("ATTNGAN_CACHE", str(tmp_path / "cache"))
    pipeline = AttnGANPipeline.from_pretrained(variant_dir)
    result = run_evaluation(pipeline, EvalConfig(data=DataSpec("shapes"), metrics=["r_precision", "fd_damsm"], num_samples=12,
                                                 batch_size=6))
    assert result is not None
    assert {r["generation"]["precision"] for r in result.records} == {"bf16"}
    assert all(r["generation"]["exact"] is False for r in result.records)
    assert 0.0 <= result.summary["r_precision"] <= 1.0 and math.isfinite(result.summary["fd_damsm"])


# --------------------------------------------------------------------------- training in bf16
TINY_DAMSM = ["text_encoder.word_embedding_dim=16", "text_encoder.hidden_dim=16", "text_encoder.dropout=0.0",
              "text_encoder.rnn_type=gru", "text_encoder.num_layers=2", "image_encoder.image_size=32",
              "image_encoder.light_channels=8", "image_encoder.embedding_dim=16", "data.extra={size: 32}",
              "run.batch_size=8", "run.log_every=1", "run.checkpoint_every=100", "run.max_steps=2"]
TINY_GAN = ["generator.channels=8", "generator.condition_dim=8", "generator.noise_dim=8", "generator.num_stages=2",
            "generator.first_stage_size=16", "generator.self_attention=true", "generator.spectral_norm=true",
            "discriminator.channels=8", "discriminator.spectral_norm=true", "discriminator.self_attention=true",
            "data.extra={size: 32}", "run.batch_size=8", "run.log_every=1", "run.checkpoint_every=100",
            "run.sample_every=1", "run.max_steps=2"]


@pytest.fixture(scope="module")
def bf16_damsm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from attngan.training.damsm import train_damsm
    from attngan.training.options import resolve_config

    out = tmp_path_factory.mktemp("damsm-bf16")
    return train_damsm(resolve_config("damsm", "shapes", TINY_DAMSM + ["run.precision=bf16", f"run.out_dir={out}"]))


def _logged(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_damsm_trains_in_bf16_with_a_gru(bf16_damsm: Path) -> None:
    import yaml

    run = bf16_damsm.parent
    assert yaml.safe_load((run / "damsm_config.yaml").read_text())["damsm"]["run"]["precision"] == "bf16"
    logs = _logged(run)
    assert len(logs) == 2 and all(math.isfinite(r["loss"]) for r in logs)
    from attngan.hub import load_damsm

    encoders = load_damsm(bf16_damsm)
    assert all(p.dtype == torch.float32 for p in encoders.text_encoder.parameters())  # fp32 master weights


@pytest.mark.parametrize("precision,variant", [("bf16", "multi_stage"), ("auto", "multi_stage"), ("bf16", "dcgan")])
def test_gan_trains_in_bf16_with_samples(precision: str, variant: str, bf16_damsm: Path, tmp_path: Path,
                                         forced_bf16: None) -> None:
    import yaml

    from attngan.hub import load_pretrained
    from attngan.training.gan import train_gan
    from attngan.training.options import resolve_config

    cfg = resolve_config("gan", "shapes", TINY_GAN + [f"run.precision={precision}", f"run.out_dir={tmp_path}",
                                                      f"damsm={bf16_damsm}", f"generator.variant={variant}"])
    model = train_gan(cfg)
    resolved = yaml.safe_load((tmp_path / "train_config.yaml").read_text())["gan"]["run"]["precision"]
    assert resolved == "bf16"  # auto, with the probe forced, is recorded as what ran
    logs = _logged(tmp_path)
    assert len(logs) == 2 and all(math.isfinite(v) for r in logs for k, v in r.items() if k.startswith("loss"))
    assert len(list((tmp_path / "samples").glob("step-*.png"))) >= 2  # grids drawn in bf16, every step
    bundle = load_pretrained(model)
    assert all(p.dtype == torch.float32 for p in bundle.generator.parameters())
    assert torch.isfinite(AttnGANPipeline(bundle)(CAPTIONS[0], seed=0).images[-1]).all()


def test_a_failing_sample_grid_does_not_stop_training(bf16_damsm: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from attngan.training import checkpoint as ckpt
    from attngan.training.gan import GANTrainer, train_gan
    from attngan.training.options import resolve_config

    def broken(self: GANTrainer) -> None:
        raise RuntimeError("Input type (CPUBFloat16Type) and weight type (torch.FloatTensor) should be the same")

    monkeypatch.setattr(GANTrainer, "save_samples", broken)
    cfg = resolve_config("gan", "shapes", TINY_GAN + [f"run.out_dir={tmp_path}", f"damsm={bf16_damsm}",
                                                      "run.max_steps=3", "run.precision=fp32"])
    with caplog.at_level(logging.ERROR, logger="attngan.training.gan"):
        model = train_gan(cfg)
    assert (model / "model.safetensors").exists()
    assert len(_logged(tmp_path)) == 3
    found = ckpt.latest_checkpoint(tmp_path / "checkpoints")
    assert found is not None and found[1]["step"] == 3
    failures = [r for r in caplog.records if "sample grid" in r.getMessage()]
    assert len(failures) == 4  # steps 1, 2, 3 and the final grid, each logged, none fatal


def test_resizing_encoders_take_bf16_images() -> None:
    """Antialiased shrinking has no bf16 CPU kernel: the light DAMSM encoder and the attribute
    classifier resize bf16 images (as a bf16 generator's 256 px output reaches them) in fp32."""
    from attngan.metrics.classifier import AttributeClassifier, ClassifierConfig
    from attngan.models.image_encoder import LightImageEncoder

    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    encoder = LightImageEncoder(ImageEncoderConfig(kind="light", embedding_dim=16, image_size=32, light_channels=8))
    classifier = AttributeClassifier(ClassifierConfig(num_values_per_attribute=(3, 2), image_size=32))
    encoder.eval(), classifier.eval()
    with torch.no_grad():
        fp32 = encoder(images), classifier.features(images)
        with autocast("bf16", torch.device("cpu")):
            bf16 = encoder(images.bfloat16()), classifier.features(images.bfloat16())
    for a, b in zip((*fp32[0], fp32[1]), (*bf16[0], bf16[1]), strict=True):
        assert a.shape == b.shape and torch.isfinite(b.float()).all()
        assert float((a - b.float()).norm() / a.norm()) < 0.05  # bf16 keeps ~3 significant digits
