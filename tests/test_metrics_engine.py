"""The evaluation engine: a new metric is one class in one file, records carry the run's identity,
and metric resolution explains what it leaves out."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from attngan.cli import main
from attngan.data import DataSpec, ShapesDataset
from attngan.inference.pipeline import AttnGANPipeline
from attngan.metrics import (
    Capabilities,
    EvalConfig,
    Metric,
    MissingWeightsError,
    get_metric,
    metric_names,
    register_metric,
    resolve_metrics,
    run_evaluation,
    unregister_metric,
)
from attngan.metrics.records import RECORD_FIELDS

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


class MeanBrightness(Metric):
    """A metric written the way a user adds one: what it collects per batch, how it summarises, its row."""

    name = "mean_brightness"

    def collect(self, batch: Any, ctx: Any) -> dict[str, torch.Tensor]:
        return {"gen": batch["images"].mean(dim=(1, 2, 3)), "real": batch["real_first"].mean(dim=(1, 2, 3))}

    def summarise(self, parts: dict[str, list[Any]], ctx: Any) -> dict[str, Any]:
        gen, real = torch.cat(parts["gen"]), torch.cat(parts["real"])
        return {"values": {"mean_brightness": float(gen.double().mean()),
                           "real_mean_brightness": float(real.double().mean())},
                "label": "mean pixel value in [-1, 1]", "feature_extractor": None, "num_samples": int(gen.numel())}

    def rows(self, record: dict[str, Any]) -> list[tuple[str, str, str]]:
        values = record["values"]
        return [("mean brightness", f"{values['mean_brightness']:.4f}", f"{values['real_mean_brightness']:.4f}")]


@pytest.fixture
def mean_brightness() -> Any:
    register_metric(MeanBrightness)
    yield MeanBrightness
    unregister_metric("mean_brightness")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNGAN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir: Path) -> AttnGANPipeline:
    return AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32")


def test_a_metric_registered_in_one_class_runs_in_the_library_and_the_cli(
        mean_brightness: Any, pipeline: AttnGANPipeline, tiny_model_dir: Path, tmp_path: Path) -> None:
    assert "mean_brightness" in metric_names()
    result = run_evaluation(pipeline, EvalConfig(metrics=["mean_brightness", "fd_damsm"], num_samples=10,
                                                 batch_size=4, seed=2))
    assert result is not None and [r["metric"] for r in result.records] == ["mean_brightness", "fd_damsm"]
    record = result.records[0]
    assert set(record) == set(RECORD_FIELDS) and record["num_samples"] == 10 and record["seed"] == 2
    # the engine handed the metric the generated images and the real images of the samples' captions
    preview = result.details["preview"]
    assert record["values"]["mean_brightness"] == pytest.approx(float(preview["generated"].double().mean()))
    data = ShapesDataset("test", image_sizes=(64,), train=False)
    real = torch.stack([data[int(i)]["images"][-1] for i in result.details["image_indices"]])
    assert record["values"]["real_mean_brightness"] == pytest.approx(float(real.double().mean()), abs=1e-6)
    out = tmp_path / "r.jsonl"
    cli = CliRunner().invoke(main, ["evaluate", "--model", str(tiny_model_dir), "--metrics", "mean_brightness",
                                    "--num-samples", "6", "--device", "cpu", "--out", str(out)],
                             catch_exceptions=False)
    assert cli.exit_code == 0, cli.output
    assert "mean brightness" in cli.output and json.loads(out.read_text())["metric"] == "mean_brightness"
    listed = CliRunner().invoke(main, ["evaluate", "--metrics", "list"], catch_exceptions=False)
    assert listed.exit_code == 0 and listed.output.split()[-1] == "mean_brightness"


def test_registration_and_unknown_names() -> None:
    with pytest.raises(TypeError, match="Metric subclass"):
        register_metric(object)  # type: ignore[arg-type]

    class Clash(Metric):
        name = "fid"

    with pytest.raises(ValueError, match="already registered"):
        register_metric(Clash)
    with pytest.raises(KeyError, match="not registered"):
        unregister_metric("nope")
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        get_metric("nope")
    caps = Capabilities("shapes", True, True, True, True)
    with pytest.raises(ValueError, match=r"unknown metric\(s\) attributes.*scene_accuracy \(shapes\)"):
        resolve_metrics(["attributes"], caps)
    assert metric_names()[:3] == ["r_precision", "scene_accuracy", "attribute_accuracy"]


def test_automatic_mode_explains_what_it_leaves_out(tmp_path: Path) -> None:
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="nothing to compute"):
        resolve_metrics(None, Capabilities("shapes", False, True, True, False))
    shapes = Capabilities("shapes", True, True, True, True)
    chosen, notes = resolve_metrics(None, shapes)
    assert chosen == ["r_precision", "scene_accuracy", "fd_damsm", "fd_classifier", "diversity"]
    assert not any("attribute_accuracy" in n for n in notes)  # no meaning for scenes: left out silently
    assert any(n.startswith("fid, is skipped: pass --inception-weights FILE") for n in notes)
    cub = Capabilities("cub", False, False, False, False, {"tf": weights})
    chosen, notes = resolve_metrics(None, cub)
    assert chosen == ["fid", "is"]
    assert any(n.startswith("r_precision skipped") and "image_encoder" in n for n in notes)
    with pytest.raises(ValueError, match="scene_accuracy needs the shapes data set"):
        resolve_metrics(["scene_accuracy"], cub)
    with pytest.raises(MissingWeightsError, match="birds_inception_weights"):
        resolve_metrics(["is"], Capabilities("cub", weights={"birds": "/absent/birds.pth"}))


def test_data_spec_is_the_one_data_type(tmp_path: Path) -> None:
    from attngan.config import ConfigError
    from attngan.data import build_from_options
    from attngan.training.options import GANTrainConfig, resolve_config

    assert typing.get_type_hints(GANTrainConfig)["data"] is DataSpec
    cfg = resolve_config("gan", "birds", ["data.missing=skip", "data.split=train", "data.num_workers=2"])
    assert isinstance(cfg.data, DataSpec) and cfg.data.missing == "skip" and cfg.data.captions_per_image == 10
    for override, message in (("data.missing=maybe", "data.missing"), ("data.root=null", "data.root"),
                              ("data.kind=pictures", "data.kind")):
        with pytest.raises(ConfigError, match=message):
            resolve_config("gan", "birds", [override])
    data = build_from_options(DataSpec("shapes", extra={"size": 7}), (32,), 12, split="validation", train=False)
    assert len(data) == 7 and data.split == "validation"
    assert DataSpec("shapes").describe(64) == {"name": "shapes", "split": "test", "image_size": 64}
    assert DataSpec("shapes", missing="skip", extra={"size": 3}).describe()["extra"] == {"size": 3}
