"""The fused inference generator (``attngan.inference.fast``): exactness of each rewrite, image parity
with the reference generator, and the pipeline / CLI options that choose it."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from attngan.cli import main
from attngan.config import bird_config
from attngan.inference import fast
from attngan.inference.backends import FastBackend, ReferenceBackend
from attngan.inference.fast import FastGenerator, encode_text
from attngan.inference.pipeline import AttnGANPipeline
from attngan.models.attention import word_attention
from attngan.models.generator import Generator
from attngan.models.layers import init_weights_original
from attngan.models.rewrites import fold_batchnorm, subpixel_kernels
from attngan.models.text_encoder import TextEncoder

from .conftest import make_tiny_bundle


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = float(((a.double() - b.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


def randomise_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
            m.weight.data.copy_(1 + torch.randn(n, generator=g) * 0.1)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def inputs(batch: int, noise: int, cond: int, dim: int, words: int, lengths: list[int], seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(words)[None, :] >= torch.tensor(lengths)[:, None]
    w = torch.randn(batch, dim, words, generator=g).masked_fill(mask[:, None, :], 0.0)
    return (torch.randn(batch, noise, generator=g), torch.randn(batch, dim, generator=g), w, mask,
            torch.randn(batch, cond, generator=g))


def compare(reference: Generator, fast_gen: nn.Module, args: tuple, min_psnr: float, max_abs: float | None) -> None:
    z, sentence, words, mask, eps = args
    with torch.inference_mode():
        ref = reference(z, sentence, words, mask, eps=eps)
        out = fast_gen(z, sentence, words, mask, eps=eps)
    assert len(out.images) == len(ref.images) and len(out.attention_maps) == len(ref.attention_maps)
    for a, b in zip(out.images, ref.images, strict=True):
        assert a.shape == b.shape and a.dtype == torch.float32
        assert psnr(a, b) >= min_psnr
        if max_abs is not None:
            assert (a - b).abs().max() <= max_abs
    for a, b in zip(out.attention_maps, ref.attention_maps, strict=True):
        assert a.shape == b.shape
        if max_abs is not None:
            assert (a - b).abs().max() <= max_abs
    torch.testing.assert_close(out.mu, ref.mu)
    torch.testing.assert_close(out.condition, ref.condition)


# --------------------------------------------------------------------------- the rewrites
def test_batchnorm_fold_is_exact_in_fp32() -> None:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(16, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24)
    linear, bn1 = nn.Linear(10, 12, bias=False), nn.BatchNorm1d(12)
    randomise_batchnorm(nn.ModuleList([bn, bn1]))
    bn.eval(), bn1.eval()
    x = torch.randn(2, 16, 9, 9)
    w, b = fold_batchnorm(conv.weight, None, bn)
    assert (F.conv2d(x, w.float(), b.float(), padding=1) - bn(conv(x))).abs().max() <= 1e-5
    v = torch.randn(5, 10)
    w, b = fold_batchnorm(linear.weight, None, bn1)
    assert (F.linear(v, w.float(), b.float()) - bn1(linear(v))).abs().max() <= 1e-5


def test_subpixel_kernels_equal_upsample_then_conv() -> None:
    torch.manual_seed(0)
    x, w = torch.randn(2, 5, 6, 7), torch.randn(4, 5, 3, 3)
    expected = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, padding=1)  # [2, 4, 12, 14]
    phases = F.conv2d(x, subpixel_kernels(w).reshape(16, 5, 2, 2).float(), padding=1)  # [2, 16, 7, 8]
    for a in (0, 1):
        for b in (0, 1):
            k = 2 * a + b
            got = phases[:, 4 * k:4 * (k + 1), a:a + 6, b:b + 7]
            assert (got - expected[:, :, a::2, b::2]).abs().max() <= 1e-5


def test_encode_text_without_packing_matches() -> None:
    torch.manual_seed(0)
    enc = TextEncoder(dataclasses.replace(bird_config().text_encoder, vocab_size=50, word_embedding_dim=12,
                                          hidden_dim=16)).eval()
    tokens = torch.randint(1, 50, (3, 9))
    tokens[:, 7:] = 0
    with torch.inference_mode():
        for lengths in (torch.tensor([7, 7, 7]), torch.tensor([7, 5, 2])):
            t = tokens.masked_fill(torch.arange(9)[None] >= lengths[:, None], 0)
            for a, b in zip(encode_text(enc, t, lengths), enc(t, lengths), strict=True):
                assert a.shape == b.shape and (a - b).abs().max() <= 1e-6


@pytest.mark.parametrize("legacy_mask_tiling", [False, True])
def test_channels_last_word_attention_matches(legacy_mask_tiling: bool) -> None:
    g = torch.Generator().manual_seed(0)
    b, c, h, w, t = 3, 8, 5, 6, 7
    features = torch.randn(b, c, h, w, generator=g)
    words = torch.randn(b, c, t, generator=g)
    lengths = torch.tensor([7, 4, 2])  # different lengths: the legacy tiling pairs rows with other samples
    mask = torch.arange(t)[None, :] >= lengths[:, None]
    for m in (mask, None):
        expected = word_attention(features, words, m, legacy_mask_tiling)
        got = fast.channels_last_word_attention(features.contiguous(memory_format=torch.channels_last), words, m,
                                                legacy_mask_tiling)
        for a, e in zip(got, expected, strict=True):
            assert a.shape == e.shape and (a - e).abs().max() <= 1e-6
    if legacy_mask_tiling:  # the tiling changes the result, so the twin is held to the right one
        plain = word_attention(features, words, mask, False)[1]
        assert (fast.channels_last_word_attention(features, words, mask, True)[1] - plain).abs().max() > 1e-3


TWIN_ROW = re.compile(r":(?:class|func):`(\w+)`\s+:(?:class|func|meth):`~([\w.]+)`\s+``tests/(\w+\.py)::(\w+)(\*?)``")


def resolve(dotted: str) -> object:
    """``attngan.models.text_encoder.TextEncoder.forward`` -> that object (the longest importable module first)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise AssertionError(f"{dotted} cannot be imported")


def test_every_twin_names_its_reference_and_an_existing_parity_test() -> None:
    """The twin tables of :mod:`attngan.inference.fast` and :mod:`attngan.inference.onnx`: every parity
    test they name exists, and every reference names its twin in its own docstring."""
    from attngan.inference import onnx as onnx_twins

    root = Path(__file__).resolve().parent
    rows = []
    for module in (fast, onnx_twins):
        rows += [m.groups() for m in map(TWIN_ROW.match, (line.strip() for line in (module.__doc__ or "").splitlines()))
                 if m is not None]
    assert len(rows) >= 6
    for twin, reference, test_file, test_name, wildcard in rows:
        tests = set(re.findall(r"^def (test_\w+)", (root / test_file).read_text(), re.M))
        named = [n for n in tests if n.startswith(test_name)] if wildcard else [n for n in tests if n == test_name]
        assert named, f"{twin}'s parity test {test_file}::{test_name}{wildcard} does not exist"
        assert twin in (inspect.getdoc(resolve(reference)) or ""), f"{reference}'s docstring does not name its twin {twin}"


# --------------------------------------------------------------------------- the generator
@pytest.mark.parametrize("variant", ["multi_stage", "dcgan", "self_attention", "condition_modulation"])
def test_fast_generator_matches_tiny_model(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = make_tiny_bundle()
    cfg = bundle.config.generator
    if variant != "multi_stage":
        cfg = dataclasses.replace(cfg, variant=variant if variant == "dcgan" else "multi_stage",
                                  self_attention=variant == "self_attention", legacy_mask_tiling=True,
                                  condition_modulation=variant == "condition_modulation")
    torch.manual_seed(0)
    gen = Generator(cfg)
    gen.apply(init_weights_original)
    if variant == "condition_modulation":
        assert gen.initial.modulation is not None
        for modulation in gen.initial.modulation:  # the identity after the original's init; make them count
            assert not modulation.fc.weight.any() and not modulation.fc.bias.any()
            nn.init.normal_(modulation.fc.weight, std=0.3)
            nn.init.normal_(modulation.fc.bias, std=0.3)
    randomise_batchnorm(gen)
    gen.eval()
    if variant == "self_attention":
        gen.initial.self_attention.gamma.data.fill_(0.5)
    args = inputs(3, cfg.noise_dim, cfg.condition_dim, cfg.text_dim, 6, [6, 3, 1])
    compare(gen, FastGenerator(gen), args, 30.0, 1e-5)
    compare(gen, FastGenerator(gen, subpixel=False), args, 30.0, 1e-5)
    monkeypatch.setattr(fast, "_mkldnn_ok", lambda x: False)  # the plain-op path (non-CPU devices)
    compare(gen, FastGenerator(gen), args, 30.0, 1e-5)


def test_fast_generator_matches_bird_config_batch_2() -> None:
    torch.manual_seed(0)
    gen = Generator(bird_config().generator)
    gen.apply(init_weights_original)
    randomise_batchnorm(gen)
    gen.eval()
    args = inputs(2, 100, 100, 256, 18, [18, 11])
    compare(gen, FastGenerator(gen), args, 30.0, 1e-4)
    with torch.inference_mode():  # bf16 (slow without native support): the first two stages
        ref = gen(*args[:4], eps=args[4], num_stages=2)
        out = FastGenerator(gen, dtype=torch.bfloat16)(*args[:4], eps=args[4], num_stages=2)
    assert all(psnr(a, b) >= 30.0 for a, b in zip(out.images, ref.images, strict=True))


def test_fast_generator_refuses_training_mode() -> None:
    gen = Generator(make_tiny_bundle().config.generator).train()
    with pytest.raises(ValueError, match="eval"):
        FastGenerator(gen)


# --------------------------------------------------------------------------- options
def test_pipeline_defaults_to_the_fast_path() -> None:
    bundle = make_tiny_bundle()
    fast_pipe, exact_pipe = AttnGANPipeline(bundle, precision="fp32"), AttnGANPipeline(bundle, exact=True)
    assert not fast_pipe.exact and exact_pipe.exact
    assert isinstance(fast_pipe.backend, FastBackend) and isinstance(fast_pipe.backend.generator, FastGenerator)
    assert isinstance(exact_pipe.backend, ReferenceBackend)
    a = fast_pipe(["a red circle", "a big blue square on the left"], num_images=2, seed=3)
    b = exact_pipe(["a red circle", "a big blue square on the left"], num_images=2, seed=3)
    assert a.settings["exact"] is False and b.settings["exact"] is True
    for x, y in zip(a.images + a.attention_maps, b.images + b.attention_maps, strict=True):
        assert (x - y).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="precision"):
        fast_pipe.set_precision("fp16")


def test_auto_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = make_tiny_bundle()
    monkeypatch.setenv("ATTNGAN_NATIVE_BF16", "0")
    assert AttnGANPipeline(bundle).precision == "fp32"
    monkeypatch.setenv("ATTNGAN_NATIVE_BF16", "1")
    pipe = AttnGANPipeline(bundle)
    assert pipe.precision == "bf16" and pipe.backend.generator.dtype == torch.bfloat16
    assert AttnGANPipeline(bundle, exact=True).precision == "fp32"  # the reference path stays exact
    assert pipe.set_precision("fp32").precision == "fp32" and pipe.backend.generator.dtype == torch.float32
    assert pipe.set_precision("auto", exact=True).exact and pipe.precision == "fp32"
    with pytest.raises(ValueError, match="exact path runs in fp32"):
        AttnGANPipeline(bundle, precision="bf16", exact=True)


def test_bf16_runs_the_text_encoder_in_fp32() -> None:
    """bf16 must not reach the LSTM (oneDNN has no bf16 LSTM without native bf16)."""
    from attngan.config import ModelConfig
    from attngan.hub import build_bundle

    tiny = make_tiny_bundle()
    config = ModelConfig(text_encoder=dataclasses.replace(bird_config().text_encoder, vocab_size=len(tiny.vocab)),
                         generator=dataclasses.replace(tiny.config.generator, text_dim=256), name="bf16-test")
    bundle = build_bundle(config, tiny.vocab)
    out = AttnGANPipeline(bundle, precision="bf16")(["a red circle", "blue"], seed=1, return_intermediates=True)
    assert out.settings["precision"] == "bf16" and torch.isfinite(out.images[-1]).all()
    assert out.intermediates["word_features"].dtype == torch.float32


def test_cli_exact_and_precision_flags(tiny_model_dir: Path, tmp_path: Path) -> None:
    for flags in (["--exact"], ["--precision", "auto"], ["--precision", "fp32"]):
        result = CliRunner().invoke(main, ["generate", "a red circle", "--seed", "1", "--model", str(tiny_model_dir),
                                           "--out", str(tmp_path / flags[-1].strip("-")), *flags])
        assert result.exit_code == 0, result.output
