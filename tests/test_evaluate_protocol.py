"""``attngan evaluate`` end to end as the papers evaluate: shuffled folds with recorded seeds, images
generated as ``attngan generate`` generates them, data options, a partial CUB download, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attngan.cli import main
from attngan.data import DataSpec
from attngan.inference.pipeline import AttnGANPipeline
from attngan.metrics import EvalConfig, run_evaluation

from .conftest import CUB, require

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNGAN_CACHE", str(tmp_path / "cache"))


def invoke(*args: str) -> object:
    return CliRunner().invoke(main, ["evaluate", "--device", "cpu", *args], catch_exceptions=False)


def test_r_precision_folds_are_shuffled_with_the_recorded_seed(tiny_model_dir: Path) -> None:
    pipeline = AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32")
    result = run_evaluation(pipeline, EvalConfig(metrics=["r_precision"], num_samples=40, batch_size=20, seed=3,
                                                 r_distractors=9, r_folds=8))
    assert result is not None
    record, hits = result.records[0], result.details["r_hits"].numpy()
    assert record["extra"]["fold_seed"] == [3, 2] and record["extra"]["num_folds"] == 8
    # independently: shuffle the per-image hits with the recorded seed, cut 8 folds of 5, mean and std of their means
    order = np.random.default_rng(record["extra"]["fold_seed"]).permutation(40)
    folds = [hits[order[i:i + 5]].mean() for i in range(0, 40, 5)]
    assert record["values"]["r_precision"] == pytest.approx(np.mean(folds), abs=1e-12)
    assert record["values"]["r_precision_std"] == pytest.approx(np.std(folds), abs=1e-12)
    assert record["values"]["r_precision"] == pytest.approx(hits.mean(), abs=1e-12)  # equal folds: the hit rate
    assert record["protocol"]["order_seed"] == [3, 1] and record["protocol"]["num_samples"] == 40


def test_images_are_those_the_pipeline_generates_for_the_caption_and_seed(tiny_model_dir: Path) -> None:
    pipeline = AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32")
    result = run_evaluation(pipeline, EvalConfig(metrics=["fd_damsm"], num_samples=6, batch_size=4, seed=11))
    assert result is not None
    preview = result.details["preview"]
    for k, caption in enumerate(preview["captions"]):
        alone = pipeline(caption, seed=11 + k).images[-1][0]  # what `attngan generate CAPTION --seed` draws
        torch.testing.assert_close(preview["generated"][k], alone.clamp(-1, 1).cpu(), rtol=0, atol=2e-5)
    assert result.records[0]["generation"] == pipeline.settings


def test_generation_options_are_those_of_generate_and_recorded(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    result = invoke("--model", str(tiny_model_dir), "--metrics", "fd_damsm", "--num-samples", "4", "--precision",
                    "fp32", "--exact", "--out", str(out))
    assert result.exit_code == 0, result.output
    generation = json.loads(out.read_text())["generation"]
    assert generation["precision"] == "fp32" and generation["exact"] is True and generation["backend"] == "reference"
    assert "backend reference (the reference modules), fp32" in result.output
    refused = invoke("--model", str(tiny_model_dir), "--backend", "onnx", "--precision", "bf16", "--out", str(out))
    assert refused.exit_code == 2 and "--backend onnx runs in fp32" in refused.output


def test_report_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    from attngan.metrics import save_classifier
    from attngan.metrics.eval_data import train_data_classifier

    recipe = {"targets": "scene-slots", "arch": "slots", "train_images": 64, "channels": 4, "feature_dim": 8,
              "epochs": 1, "batch_size": 32, "lr": 2e-3, "lr_schedule": "constant"}
    classifier = save_classifier(train_data_classifier(DataSpec("shapes"), recipe=recipe), tmp_path / "clf")
    report = tmp_path / "report"
    result = invoke("--model", str(tiny_model_dir), "--metrics", "scene_accuracy,fd_damsm", "--num-samples", "8",
                    "--classifier", str(classifier), "--report", str(report), "--out", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 0, result.output
    files = {p.name for p in report.iterdir()}
    assert {"report.md", "samples.png", "results.jsonl", "confusion-shape-every-object.png",
            "confusion-colour-every-object.png", "confusion-size-every-object.png"} == files
    text = (report / "report.md").read_text()
    assert "all attributes, every caption" in text and "![samples](samples.png)" in text
    assert [json.loads(line)["metric"] for line in (report / "results.jsonl").read_text().splitlines()] == [
        "scene_accuracy", "fd_damsm"]
    from PIL import Image

    with Image.open(report / "samples.png") as grid:
        assert grid.height > 8 * 64  # eight rows of generated and real images


def cub_model(folder: Path, vocab: object) -> Path:
    from attngan.config import GeneratorConfig, ImageEncoderConfig, ModelConfig, TextEncoderConfig
    from attngan.hub import build_bundle, save_pretrained

    torch.manual_seed(0)
    config = ModelConfig(
        text_encoder=TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=16, hidden_dim=16, max_words=18),
        generator=GeneratorConfig(text_dim=16, condition_dim=8, noise_dim=8, channels=8, num_residual=1, num_stages=3,
                                  first_stage_size=16),
        image_encoder=ImageEncoderConfig(kind="light", embedding_dim=16, image_size=64, light_channels=8),
        name="tiny-birds")
    return save_pretrained(build_bundle(config, vocab), folder)


def test_a_partial_cub_download_is_evaluated_with_missing_skip(tmp_path: Path) -> None:
    from attngan.data import build_dataset

    root = require(CUB)
    vocab = build_dataset("cub", root, split="test", image_sizes=(64,), train=False, missing="skip").vocab
    model = cub_model(tmp_path / "birds", vocab)
    out = tmp_path / "r.jsonl"
    args = ("--model", str(model), "--data", "cub", "--data-root", str(root), "--metrics", "r_precision,fd_damsm",
            "--num-samples", "24", "--batch-size", "12", "--out", str(out))
    stopped = invoke(*args)
    assert stopped.exit_code == 1 and "120 present images" in stopped.output and "--missing skip" in stopped.output
    result = invoke(*args, "--missing", "skip")
    assert result.exit_code == 0, result.output
    assert "warning: 24 samples: the papers' cub tables use 30,000" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["metric"] for r in records] == ["r_precision", "fd_damsm"]
    assert records[0]["dataset"]["missing"] == "skip" and records[0]["protocol"]["papers_num_samples"] == 30000
    assert records[1]["extra"]["floor_split"] == "train" and records[1]["values"]["fd_damsm_real_floor"] >= 0
