"""The CLIP metrics (``clip_score``, ``clip_r_precision``) and their network, from local files only:
a tiny randomly initialised open_clip model saved in each accepted form, and once the real ViT-B-32
architecture with random weights (shapes and preprocessing)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

open_clip = pytest.importorskip("open_clip")

from attngan.cli import main  # noqa: E402
from attngan.cli.flags import message  # noqa: E402
from attngan.data import DataSpec  # noqa: E402
from attngan.errors import SettingError  # noqa: E402
from attngan.hub import file_sha256  # noqa: E402
from attngan.inference.pipeline import AttnGANPipeline  # noqa: E402
from attngan.metrics import Capabilities, EvalConfig, MissingWeightsError, resolve_metrics, run_evaluation  # noqa: E402
from attngan.metrics.builtin.clip_score import clip_cosines, clip_figures  # noqa: E402
from attngan.metrics.clip import (  # noqa: E402
    OPENAI_VIT_B32_SHA256,
    CLIPFeatures,
    build_clip_model,
    galip_input,
    is_torchscript_archive,
    load_clip,
)
from attngan.metrics.protocol import DISTRACTOR_STREAM, FOLD_STREAM, shuffled_parts, stream_seed  # noqa: E402

TINY = "tiny-clip-test"
TINY_CONFIG = {"embed_dim": 16,
               "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
               "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random CLIP (two architectures: GELU, and QuickGELU as OpenAI's) as a state dict, a
    safetensors file and a TorchScript archive like OpenAI's release."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("clip")
    (folder / f"{TINY}.json").write_text(json.dumps(TINY_CONFIG))
    (folder / f"{TINY}-quickgelu.json").write_text(json.dumps({**TINY_CONFIG, "quick_gelu": True}))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    model = build_clip_model(TINY)
    torch.save(model.state_dict(), folder / "tiny.pt")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "tiny.safetensors")
    tokens = open_clip.get_tokenizer(TINY)(["a caption"])
    archive = torch.jit.trace(model, (torch.zeros(1, 3, 32, 32), tokens), check_trace=False)
    torch.jit.save(archive, folder / "tiny-archive.pt")
    return {"pt": folder / "tiny.pt", "safetensors": folder / "tiny.safetensors",
            "archive": folder / "tiny-archive.pt"}


def images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --------------------------------------------------------------------------- the network


def test_every_form_of_the_file_loads_the_same_weights(clip_files: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a download was attempted")

    for name in ("download_pretrained", "download_pretrained_from_hf", "download_pretrained_from_url"):
        monkeypatch.setattr(open_clip.factory, name, no_download, raising=False)
    x, texts = images(2), ["a small red circle", "a large blue square at the top"]
    plain = load_clip(TINY, clip_files["pt"])
    same = load_clip(TINY, clip_files["safetensors"])
    assert torch.equal(plain.features(x), same.features(x))
    assert torch.equal(plain.text_features(texts), same.text_features(texts))
    assert plain.features(x).shape == (2, 16) and plain.text_features(texts).shape == (2, 16)
    assert is_torchscript_archive(clip_files["archive"]) and not is_torchscript_archive(clip_files["pt"])
    archive = load_clip(TINY, clip_files["archive"])  # OpenAI's form: always QuickGELU
    quick = load_clip(f"{TINY}-quickgelu", clip_files["pt"])
    assert "(QuickGELU)" in archive.identity and "(torchscript)" in archive.identity
    assert torch.allclose(archive.features(x), quick.features(x), atol=1e-6)
    assert not torch.allclose(archive.features(x), plain.features(x), atol=1e-4)
    digest = file_sha256(clip_files["pt"])
    assert plain.weights_sha256 == digest and f"sha256:{digest[:16]}" in plain.identity
    assert "OpenAI" not in plain.identity and len(OPENAI_VIT_B32_SHA256) == 64


def test_missing_or_wrong_files_are_named(clip_files: dict[str, Path], tmp_path: Path) -> None:
    """Errors are typed and carry the setting at fault (the library's name; the command line's flag)."""
    with pytest.raises(MissingWeightsError, match=r"^clip_weights: .*ViT-B-32\.pt") as missing:
        load_clip(TINY, None)
    assert missing.value.field == "clip_weights" and message(missing.value).startswith("--clip-weights: ")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        load_clip(TINY, tmp_path / "absent.pt")
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(SettingError, match=rf"^clip_weights: .*{other.name} does not fit open_clip's {TINY} "
                                           r"\(clip_model\)") as wrong:
        load_clip(TINY, other)
    assert message(wrong.value).startswith("--clip-weights: ") and "(--clip-model)" in message(wrong.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(SettingError, match=r"^clip_weights: .*garbage\.pt is not a plain PyTorch state dict"):
        load_clip(TINY, garbage)
    with pytest.raises(SettingError, match="^clip_model: 'no-such-net'") as unknown:
        load_clip("no-such-net", clip_files["pt"])
    assert message(unknown.value).startswith("--clip-model: ")
    with pytest.raises(SettingError, match="^clip_model: ") as remote:
        build_clip_model("hf-hub:someone/some-clip")
    assert remote.value.field == "clip_model"


def test_preprocessing_is_clips_and_galips(clip_files: dict[str, Path]) -> None:
    clip = load_clip(TINY, clip_files["pt"])
    mean, std = torch.tensor(clip.mean).view(1, 3, 1, 1), torch.tensor(clip.std).view(1, 3, 1, 1)
    flat = torch.full((1, 3, 8, 8), 0.2)  # one colour: every resize keeps it
    level = round((0.2 + 1) * 127.5) / 255.0  # as an 8-bit PNG stores it
    assert torch.allclose(clip.image_input(flat), ((torch.full((1, 3, 32, 32), level) - mean) / std), atol=1e-6)
    x = images(1)
    pixels = ((x[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    resized = np.asarray(Image.fromarray(pixels).resize((32, 32), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    expected = (torch.from_numpy(resized).permute(2, 0, 1)[None] - mean) / std
    assert torch.allclose(clip.image_input(x), expected, atol=1e-6)
    # GALIP: no quantisation, nearest neighbour, then ((x + 1) / 2 - mean) / std on x in [0, 1]
    black = galip_input(torch.full((1, 3, 4, 4), -1.0), 8, clip.mean, clip.std)
    assert black.shape == (1, 3, 8, 8) and torch.allclose(black, ((0.5 - mean) / std).expand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="square"):
        clip.image_input(torch.zeros(1, 3, 8, 6))


def test_real_vit_b32_architecture_with_random_weights() -> None:
    """OpenAI's ViT-B/32 architecture as open_clip builds it (random weights, nothing fetched):
    224 px input, CLIP's mean and std, 77-token context, 512-d embeddings."""
    model = build_clip_model("ViT-B-32", quick_gelu=True)
    assert sum(p.numel() for p in model.parameters()) == 151_277_313
    clip = CLIPFeatures(model, open_clip.get_tokenizer("ViT-B-32"), "ViT-B-32", True, Path("random.pt"), "0" * 64,
                        "state_dict")
    assert clip.image_size == 224 and clip.resample == "bicubic"
    assert clip.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert clip.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    x = images(1, 64)
    assert clip.image_input(x).shape == (1, 3, 224, 224)
    assert clip.tokenizer(["a bird"]).shape == (1, 77)
    assert clip.features(x).shape == (1, 512) and clip.galip_features(x).shape == (1, 512)
    assert clip.text_features(["a small bird with a red head"]).shape == (1, 512)


# --------------------------------------------------------------------------- the metrics


def test_figures() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[2.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    cos = clip_cosines(a, b)
    assert cos.tolist() == pytest.approx([1.0, -1.0, math.sqrt(0.5)])
    score, clipscore = clip_figures(cos)
    assert score == pytest.approx(100 * math.sqrt(0.5) / 3)
    assert clipscore == pytest.approx(2.5 * (1.0 + 0.0 + math.sqrt(0.5)) / 3)  # negative cosines count as 0
    with pytest.raises(ValueError, match="both be"):
        clip_cosines(a, b[:2])


def test_not_computed_without_the_file_and_refused_when_asked_for() -> None:
    caps = Capabilities("shapes", True, True, True, False, {})
    chosen, notes = resolve_metrics(None, caps)
    assert "clip_score" not in chosen and "clip_r_precision" not in chosen
    assert any(n.startswith("clip_score, clip_r_precision skipped: pass --clip-weights FILE (ViT-B-32.pt")
               for n in notes), notes
    with pytest.raises(MissingWeightsError, match="^clip_weights: "):
        resolve_metrics(["clip_score"], caps)


@pytest.fixture(scope="module")
def evaluated(clip_files: dict[str, Path]) -> Any:
    pipe = AttnGANPipeline.from_pretrained(precision="fp32")
    cfg = EvalConfig(data=DataSpec("shapes"), metrics=["clip_score", "clip_r_precision", "r_precision"],
                     num_samples=12, batch_size=5, clip_weights=clip_files["pt"], clip_model=TINY, r_distractors=9)
    result = run_evaluation(pipe, cfg)
    assert result is not None
    return pipe, cfg, result


def test_metrics_match_a_direct_computation(evaluated: Any, clip_files: dict[str, Path]) -> None:
    """Each figure recomputed here from the tiny CLIP on the same images and captions."""
    from attngan.metrics.eval_data import EvalSamples, build_split

    pipe, cfg, result = evaluated
    score, rp, _ = result.records
    clip = load_clip(TINY, clip_files["pt"])
    dataset = build_split(cfg.data, "test", 64, pipe.vocab, pipe.config.text_encoder.max_words)
    samples = EvalSamples(dataset, cfg.num_samples, pipe.config.text_encoder.max_words, cfg.seed)
    batch = samples.batch(range(cfg.num_samples))
    fake = pipe.generate_from_tokens(batch["tokens"], batch["lengths"], [cfg.seed + k for k in range(12)]
                                     ).images[-1].clamp(-1, 1)
    text = clip.text_features(batch["caption_texts"])
    cos = clip_cosines(clip.features(fake), text)
    assert score["values"]["clip_score"] == pytest.approx(100 * float(cos.mean()), abs=1e-4)
    assert score["values"]["clipscore"] == pytest.approx(float((2.5 * cos.clamp(min=0)).mean()), abs=1e-5)
    real_cos = clip_cosines(clip.features(batch["real"]), text)
    assert score["values"]["real_clip_score"] == pytest.approx(100 * float(real_cos.mean()), abs=1e-4)
    galip = clip_cosines(clip.galip_features(fake), text)
    assert score["values"]["clip_score_galip"] == pytest.approx(100 * float(galip.mean()), abs=1e-4)
    # R-precision: the true caption against the 9 mismatched captions r_precision draws for the sample
    pool = samples.caption_pool()
    hits = []
    for k in range(12):
        rng = np.random.default_rng(stream_seed(cfg.seed, DISTRACTOR_STREAM, k))
        wrong = clip.text_features([pool.texts[i] for i in pool.mismatched_indices(int(batch["class_ids"][k]), 9, rng)])
        image = clip.features(fake[k:k + 1])
        scores = torch.nn.functional.cosine_similarity(image, torch.cat([text[k:k + 1], wrong]))
        hits.append(bool(scores[0] >= scores[1:].max()))
    assert result.details["clip_r_hits"].tolist() == hits
    # the figure is the mean of the fold means (10 folds of the 12 samples' seeded shuffle: two of 2, eight of 1)
    parts = shuffled_parts(12, 10, stream_seed(cfg.seed, FOLD_STREAM))
    assert sorted(len(part) for part in parts) == [1] * 8 + [2] * 2
    fold_means = [sum(hits[int(i)] for i in part) / len(part) for part in parts]
    assert rp["values"]["clip_r_precision"] == pytest.approx(sum(fold_means) / 10, abs=1e-9)
    for record in (score, rp):
        assert record["extra"]["clip_model"] == TINY and record["extra"]["clip_weights_sha256"] == clip.weights_sha256
        assert record["feature_extractor"] == clip.identity and record["generation"]["truncation"] == pipe.truncation


def test_cli_prints_both_rows_with_the_real_figures(clip_files: dict[str, Path], tmp_path: Path) -> None:
    """Done-when: attngan evaluate --metrics clip_score,clip_r_precision --clip-weights FILE on the
    bundled model prints both rows beside the real images' figures (a small random CLIP file)."""
    out = tmp_path / "results.jsonl"
    result = CliRunner().invoke(main, ["evaluate", "--metrics", "clip_score,clip_r_precision", "--clip-weights",
                                       str(clip_files["archive"]), "--clip-model", TINY, "--num-samples", "10",
                                       "--batch-size", "10", "--device", "cpu", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {line.split("  ")[0]: line for line in result.output.splitlines()}
    score, rp = rows["CLIP score (100 x cosine)"], rows["CLIP R-precision (10 folds)"]
    assert len(score.split()) == 7  # the label's 4 words, generated, real
    assert rp.count("±") == 2  # generated and real, each mean ± std
    assert "CLIP: open_clip tiny-clip-test (QuickGELU)" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["metric"] for r in records] == ["clip_score", "clip_r_precision"]
    assert records[0]["extra"]["clip_weights_format"] == "torchscript"
    assert "real_clip_r_precision" in records[1]["values"]
    missing = CliRunner().invoke(main, ["evaluate", "--metrics", "clip_score", "--num-samples", "4", "--device",
                                        "cpu", "--out", str(out)])
    assert missing.exit_code == 2 and "--clip-weights" in missing.output


def test_periodic_evaluation_of_a_run_takes_the_clip_file(clip_files: dict[str, Path], tmp_path: Path) -> None:
    from attngan.training.options import EvalOptions
    from attngan.training.periodic_eval import evaluate_run

    from .conftest import make_tiny_bundle

    options = EvalOptions(metrics=("clip_score",), num_samples=4, batch_size=4, clip_weights=str(clip_files["pt"]),
                          clip_model=TINY)
    records = evaluate_run(make_tiny_bundle(), DataSpec("shapes"), options, torch.device("cpu"), "fp32", tmp_path, 7)
    logged = json.loads((tmp_path / "evaluations.jsonl").read_text())
    assert [r["metric"] for r in records] == ["clip_score"] and logged["step"] == 7
    assert logged["extra"]["clip_model"] == TINY and "clip_score" in logged["values"]
