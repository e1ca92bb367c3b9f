"""``attngan evaluate`` and its library: the tiny random model on the shapes data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from attngan.cli import main
from attngan.data import DataSpec, ShapesDataset
from attngan.data.shapes_captions import names_background
from attngan.inference.pipeline import AttnGANPipeline
from attngan.metrics import Capabilities, EvalConfig, MissingWeightsError, resolve_metrics, save_classifier
from attngan.metrics.classifier import train_attribute_classifier
from attngan.metrics.eval_data import (
    CLASSIFIER_RECIPES,
    EvalSamples,
    classifier_cache_dir,
    train_data_classifier,
)
from attngan.metrics.run import evaluate_shapes, run_evaluation
from attngan.metrics.scenes import scene_hits, summarise_scene_hits

TINY_RECIPE = {"targets": "scene-slots", "arch": "slots", "train_images": 96, "channels": 4, "feature_dim": 8,
               "epochs": 1, "batch_size": 32, "lr": 2e-3, "lr_schedule": "cosine"}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNGAN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir: Path) -> AttnGANPipeline:
    return AttnGANPipeline.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    classifier = train_data_classifier(DataSpec("shapes"), recipe=TINY_RECIPE)
    return save_classifier(classifier, tmp_path_factory.mktemp("classifiers") / "shapes")


def invoke(*args: str) -> object:
    return CliRunner().invoke(main, ["evaluate", "--device", "cpu", *args], catch_exceptions=False)


def test_cli_writes_results_and_images(tiny_model_dir: Path, classifier_dir: Path, tmp_path: Path) -> None:
    out, images = tmp_path / "res" / "results.jsonl", tmp_path / "images"
    result = invoke("--model", str(tiny_model_dir), "--num-samples", "12", "--batch-size", "5", "--seed", "3",
                    "--classifier", str(classifier_dir), "--save-images", str(images), "--out", str(out),
                    "--diversity-captions", "2", "--diversity-seeds", "3")
    assert result.exit_code == 0, result.output
    assert "R-precision over 12 images" in result.output and "mean ± std over 10 shuffled folds" in result.output
    assert "text encoder:" in result.output and "image encoder:" in result.output
    assert "(real ceiling)" in result.output and "(real test (second draw) vs test floor)" in result.output
    assert "--inception-weights" in result.output  # the note on the skipped FID / IS
    for row in ("one object", "two objects: 1st", "two objects: 2nd", "two objects: both", "every caption"):
        assert row in result.output
    assert "diversity, 3 seeds x 2 captions" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["metric"] for r in records] == ["r_precision", "scene_accuracy", "fd_damsm", "fd_classifier",
                                              "diversity"]
    for record in records:
        assert record["model"] == "tiny-test" and record["model_hash"]
        assert record["dataset"]["name"] == "shapes" and record["dataset"]["split"] == "test"
        assert record["seed"] == 3 and record["num_samples"] == (6 if record["metric"] == "diversity" else 12)
        assert record["versions"]["torch"] and "attngan" in record["versions"]
    values = records[1]["values"]
    assert {"one_shape", "one_all", "two_first_color", "two_second_position", "two_objects", "two_all",
            "accuracy_all", "real_one_shape", "real_accuracy_all"} <= set(values)
    assert values["num_one"] + values["num_two"] == 12
    assert set(records[2]["values"]) == {"fd_damsm", "fd_damsm_real_floor"}
    assert set(records[3]["values"]) == {"fd_classifier", "fd_classifier_real_floor"}
    assert records[4]["values"]["num_captions"] == 2 and records[4]["values"]["diversity_ratio"] >= 0
    assert 0.0 <= records[0]["values"]["r_precision"] <= 1.0
    rows = [json.loads(line) for line in (images / "samples.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(12)) and rows[0]["seed"] == 3
    assert all((images / r["file"]).is_file() for r in rows)


@pytest.mark.parametrize("split", ["test", "unseen"])
def test_real_image_ceiling_is_the_classifier_on_the_real_images(pipeline: AttnGANPipeline, classifier_dir: Path,
                                                                 split: str) -> None:
    from attngan.metrics import load_classifier

    classifier = load_classifier(classifier_dir)
    cfg = EvalConfig(data=DataSpec("shapes", split=split), metrics=["scene_accuracy"], num_samples=16, batch_size=7)
    result = run_evaluation(pipeline, cfg, classifier)
    record = result.records[0]
    assert record["metric"] == "scene_accuracy" and record["dataset"]["split"] == split
    real = ShapesDataset(split, image_sizes=(64,), train=False)
    chosen = result.details["image_indices"].tolist()  # the stratified order's first 16 images, each once
    assert len(set(chosen)) == 16
    images = torch.stack([real[i]["images"][-1] for i in chosen])
    flags = [names_background(real.caption_text(i, i % 10)) for i in chosen]
    expected = summarise_scene_hits(scene_hits(classifier, images, [real.scene(i) for i in chosen], flags))
    assert {k: record["values"][f"real_{k}"] for k in expected} == pytest.approx(expected)
    assert all(0.0 <= record["values"][k] <= 1.0 for k in expected if not k.startswith("num_"))
    assert ("num_heldout" in expected) == (split == "unseen")


def test_missing_fid_weights_name_the_flag(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = invoke("--model", str(tiny_model_dir), "--metrics", "fid", "--out", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 2
    assert "--inception-weights" in result.output and "pt_inception-2015-12-05-6726825d.pth" in result.output
    result = invoke("--model", str(tiny_model_dir), "--metrics", "is", "--inception-weights",
                    str(tmp_path / "absent.pth"), "--out", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 2 and "absent.pth does not exist" in result.output
    assert not (tmp_path / "r.jsonl").exists()
    with pytest.raises(MissingWeightsError, match="torchvision_inception_weights"):
        resolve_metrics(["fid_torchvision"], Capabilities("shapes", True, True, True, True))


def test_classifier_is_trained_once_cached_and_reused(tiny_model_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Without flags, the first evaluation on shapes trains the scene classifier into the cache
    (saying so), later ones reuse it; --train-classifier trains it anew."""
    monkeypatch.setitem(CLASSIFIER_RECIPES, "shapes", dict(TINY_RECIPE))
    common = ("--model", str(tiny_model_dir), "--num-samples", "6", "--batch-size", "6", "--out", str(tmp_path / "a.jsonl"))
    folder = classifier_cache_dir(DataSpec("shapes"))
    first = invoke(*common)
    assert first.exit_code == 0, first.output
    assert "training the attribute classifier on real shapes train images (once: cached in" in first.output
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert str(folder) in first.output and "one object" in first.output  # scene accuracy is scored
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    again = invoke(*common)
    assert again.exit_code == 0, again.output
    assert "training the attribute classifier" not in again.output
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    forced = invoke(*common, "--metrics", "scene_accuracy", "--train-classifier")
    assert forced.exit_code == 0, forced.output
    assert "training the attribute classifier" in forced.output
    assert (folder / "model.safetensors").stat().st_mtime_ns != stamp
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    scenes = [r for r in records if r["metric"] == "scene_accuracy"]
    assert len(scenes) == 3 and scenes[0]["values"] == scenes[1]["values"] == scenes[2]["values"]  # same seed
    assert scenes[0]["extra"]["classifier"]["metadata"]["recipe"] == TINY_RECIPE
    auto = invoke("--model", str(tiny_model_dir), "--num-samples", "4", "--classifier", str(tmp_path / "none"),
                  "--out", str(tmp_path / "b.jsonl"))
    assert auto.exit_code == 1 and "--classifier: no attribute classifier at" in auto.output
    assert "pass --train-classifier" in auto.output
    unused = invoke("--model", str(tiny_model_dir), "--metrics", "r_precision", "--train-classifier",
                    "--out", str(tmp_path / "b.jsonl"))
    assert unused.exit_code == 2 and "--train-classifier: no metric that needs the attribute classifier" in unused.output



def test_r_precision_of_the_tiny_model_is_valid_and_batch_independent(pipeline: AttnGANPipeline) -> None:
    runs = [run_evaluation(pipeline, EvalConfig(metrics=["r_precision", "fd_damsm"], num_samples=20, batch_size=b))
            for b in (7, 20)]
    a, b = (r.summary for r in runs)
    assert 0.0 <= a["r_precision"] <= 1.0 and a["r_precision_std"] >= 0.0
    assert a["r_precision"] == b["r_precision"] and a["fd_damsm"] == pytest.approx(b["fd_damsm"], rel=1e-6)
    assert a["fd_damsm"] >= 0.0 and a["fd_damsm_real_floor"] >= 0.0
    record = runs[0].records[0]
    assert record["extra"]["num_distractors"] == 99 and record["extra"]["num_folds"] == 10


def test_evaluate_shapes_returns_every_figure(pipeline: AttnGANPipeline, classifier_dir: Path) -> None:
    result = evaluate_shapes(pipeline, num_samples=10, seed=0, classifier=classifier_dir)
    expected = {"r_precision", "r_precision_std", "accuracy_all", "real_accuracy_all", "one_position",
                "real_two_second_position", "fd_damsm", "fd_damsm_real_floor", "fd_classifier",
                "fd_classifier_real_floor", "num_samples", "num_real"}
    assert expected <= set(result) and result["num_samples"] == 10


def test_samples_wrap_around_with_the_next_captions(pipeline: AttnGANPipeline) -> None:
    dataset = ShapesDataset("test", image_sizes=(64,), size=4, vocab=pipeline.vocab, train=False)
    samples = EvalSamples(dataset, num_samples=9, max_words=12)
    batch = samples.batch(range(9))
    first = samples.image_index(0)
    assert samples.num_real == 4 and batch["first_pass"].tolist() == [True] * 4 + [False] * 5
    assert sorted(batch["image_indices"][:4].tolist()) == [0, 1, 2, 3]  # the first pass covers the split once
    assert batch["image_indices"][[0, 4, 8]].tolist() == [first] * 3
    assert batch["keys"][0] == batch["keys"][4] == batch["keys"][8]
    assert len({batch["texts"][0], batch["texts"][4], batch["texts"][8]}) == 3
    assert torch.equal(batch["real"][0], batch["real"][4])
    assert int(batch["lengths"].max()) <= 12 and batch["attributes"].shape == (9, 8)
    assert batch["scenes"][0] == batch["scenes"][4] == dataset.scene(first) and batch["names_background"].shape == (9,)
    texts = [dataset.caption_text(first, (first + c) % 10) for c in range(3)]  # its own caption, then the next ones
    assert batch["caption_texts"][0::4] == texts
    assert [names_background(t) for t in texts] == batch["names_background"][[0, 4, 8]].tolist()




class FakeInception:
    """Stands in for the Inception network (tested in test_metrics_inception): cheap features and logits."""

    identity, fid_label, is_label = "fake inception", "FID (fake)", "IS (fake)"

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = torch.cat([images.mean((2, 3)), images.std((2, 3))], dim=1)  # [N, 6]
        return feats, feats[:, :4] * 10

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[0]


def test_fid_and_is_with_a_local_weights_file(pipeline: AttnGANPipeline, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import attngan.metrics.engine as engine

    loaded = []
    monkeypatch.setattr(engine, "load_inception",
                        lambda kind, path, device: loaded.append((kind, path)) or FakeInception())
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"")
    cfg = EvalConfig(metrics=["fid", "is"], num_samples=12, batch_size=5, inception_weights=weights)
    fid, inception = run_evaluation(pipeline, cfg).records
    assert loaded == [("tf", weights)]  # one network for both metrics
    assert fid["metric"] == "fid" and fid["values"]["fid"] > 0 and fid["extra"]["num_reference"] == 12
    assert fid["label"] == "FID (fake)" and fid["feature_extractor"] == "fake inception"
    assert inception["metric"] == "is" and inception["values"]["is"] >= 1.0 and inception["extra"]["splits"] == 10


def test_usage_errors_name_the_flag(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = ("--model", str(tiny_model_dir), "--out", str(tmp_path / "r.jsonl"))
    for args, expected in [(("--metrics", "r_precision,bogus"), "--metrics: unknown metric(s) bogus"),
                           (("--data", "cub"), "--data-root: the cub data set needs its root folder"),
                           (("--data", "shapes", "--data-root", str(tmp_path)), "--data-root: the shapes data set"),
                           (("--num-samples", "1", "--metrics", "fd_damsm"), "--num-samples: Fréchet distances")]:
        result = invoke(*model, *args)
        assert result.exit_code == 1 and expected in result.output, (args, result.output)
    assert not (tmp_path / "r.jsonl").exists()


def test_split_option_and_a_single_object_classifier_is_refused(tiny_model_dir: Path, classifier_dir: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "u.jsonl"
    result = invoke("--model", str(tiny_model_dir), "--split", "unseen", "--metrics", "scene_accuracy", "--num-samples",
                    "6", "--classifier", str(classifier_dir), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "held-out pairs" in result.output and "unseen split" in result.output
    record = json.loads(out.read_text())
    assert record["dataset"]["split"] == "unseen" and record["values"]["num_heldout"] >= 6
    result = invoke("--model", str(tiny_model_dir), "--split", "validation", "--metrics", "fd_classifier",
                    "--num-samples", "4", "--classifier", str(classifier_dir), "--out", str(out))
    assert result.exit_code == 0 and "(real validation (second draw) vs validation floor)" in result.output
    ds = ShapesDataset("train", size=64, max_objects=1)
    old = save_classifier(train_attribute_classifier(ds, channels=4, feature_dim=8, epochs=1), tmp_path / "old")
    result = invoke("--model", str(tiny_model_dir), "--metrics", "scene_accuracy", "--num-samples", "4",
                    "--classifier", str(old), "--out", str(out))
    assert result.exit_code == 1 and "needs the slot scene classifier" in result.output
