"""The metric registry: records with the run's identity, JSONL lines, and the built-in metrics end to end."""

from __future__ import annotations

import json

import pytest
import torch

from attngan.config import ImageEncoderConfig, TextEncoderConfig
from attngan.metrics import (
    DEFAULT_REGISTRY,
    AttributeClassifier,
    CaptionPool,
    ClassifierConfig,
    MetricContext,
    MetricRegistry,
    MissingWeightsError,
    append_jsonl,
    compute,
    evaluate,
)
from attngan.models import LightImageEncoder, TextEncoder

RECORD_FIELDS = {"metric", "values", "label", "feature_extractor", "model", "model_hash", "generation", "dataset", "seed",
                 "num_samples", "time", "seconds", "versions", "extra"}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def test_custom_metric_record_and_jsonl(tmp_path) -> None:
    registry = MetricRegistry()

    @registry.register_metric("mean_pixel")
    def mean_pixel(ctx: MetricContext) -> dict:
        images = torch.cat([b["images"] for b in ctx.generated_batches("mean_pixel")])
        return {"values": {"mean": images.mean()}, "label": "mean pixel", "feature_extractor": None,
                "num_samples": images.shape[0]}

    ctx = MetricContext(generated=lambda: ({"images": torch.ones(4, 3, 2, 2)} for _ in range(3)),
                        dataset={"name": "ones", "split": "test"}, model_name="toy", model_hash="abc123", seed=7,
                        num_samples=10)
    record = registry.compute("mean_pixel", ctx)
    assert set(record) == RECORD_FIELDS
    assert record["values"] == {"mean": 1.0} and record["num_samples"] == 10  # 4 + 4 + 2 of 12
    assert record["model"] == "toy" and record["model_hash"] == "abc123" and record["seed"] == 7
    assert {"torch", "torchvision", "numpy", "scipy", "torch-fidelity"} <= set(record["versions"])
    assert record["versions"]["torch"] and record["versions"]["numpy"]
    path = tmp_path / "results" / "metrics.jsonl"
    append_jsonl(path, record)
    append_jsonl(path, record)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["metric"] == "mean_pixel" and lines[1]["dataset"]["split"] == "test"


def test_registration_errors() -> None:
    registry = MetricRegistry()
    registry.register_metric("m")(lambda ctx: {"values": {}})
    with pytest.raises(ValueError, match="already registered"):
        registry.register_metric("m")(lambda ctx: {"values": {}})
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        registry.compute("nope", MetricContext())
    assert {"fid", "is", "fid_torchvision", "is_torchvision", "r_precision", "attribute_accuracy", "fd_damsm",
            "fd_classifier"} <= set(DEFAULT_REGISTRY.names())


def test_fid_without_weights_names_the_file_and_argument() -> None:
    ctx = MetricContext(generated=lambda: iter([torch.zeros(2, 3, 8, 8)]), real_images=lambda: iter([]))
    with pytest.raises(MissingWeightsError, match=r"pt_inception-2015-12-05-6726825d\.pth.*inception_weights="):
        compute("fid", ctx)
    with pytest.raises(MissingWeightsError, match=r"inception_v3_google.*--torchvision-inception-weights"):
        compute("fid_torchvision", ctx)
    with pytest.raises(ValueError, match="MetricContext.image_encoder"):
        compute("r_precision", ctx)


@pytest.fixture
def toy_context(tmp_path) -> MetricContext:
    torch.manual_seed(0)
    text_encoder = TextEncoder(TextEncoderConfig(vocab_size=20, word_embedding_dim=8, hidden_dim=8, dropout=0.0))
    image_encoder = LightImageEncoder(ImageEncoderConfig(kind="light", embedding_dim=8, image_size=32,
                                                         light_channels=4))
    classifier = AttributeClassifier(ClassifierConfig((3, 4), ("colour", "position"), image_size=16, channels=4,
                                                      feature_dim=8))
    g = torch.Generator().manual_seed(1)
    images = torch.rand(60, 3, 32, 32, generator=g) * 2 - 1
    tokens = torch.randint(1, 20, (60, 5), generator=g)
    class_ids = torch.arange(60) % 6
    attributes = torch.stack([torch.arange(60) % 3, torch.arange(60) % 4], dim=1)

    def generated():
        for i in range(0, 60, 16):
            yield {"images": [images[i:i + 16, :, ::2, ::2], images[i:i + 16]], "tokens": tokens[i:i + 16],
                   "lengths": torch.full((len(tokens[i:i + 16]),), 5), "class_ids": class_ids[i:i + 16],
                   "attributes": attributes[i:i + 16]}

    return MetricContext(
        generated=generated, real_images=lambda: (images[i:i + 25] for i in range(0, 60, 25)),
        dataset={"name": "toy", "split": "test"}, model_name="toy-model", model_hash="0f0f", seed=3,
        image_encoder=image_encoder, text_encoder=text_encoder, classifier=classifier,
        captions=CaptionPool(tokens, torch.full((60,), 5), class_ids), cache_dir=tmp_path / "cache",
        options={"r_distractors": 9, "r_folds": 5},
    )


def test_builtin_metrics_end_to_end(tmp_path, toy_context: MetricContext) -> None:
    jsonl = tmp_path / "metrics.jsonl"
    records = evaluate(["fd_damsm", "fd_classifier", "r_precision", "attribute_accuracy"], toy_context, jsonl)
    by_name = {r["metric"]: r for r in records}
    # generated and real images are the same 60 images: the in-domain distances vanish
    assert abs(by_name["fd_damsm"]["values"]["fd_damsm"]) < 1e-6
    assert abs(by_name["fd_classifier"]["values"]["fd_classifier"]) < 1e-6
    assert by_name["fd_damsm"]["label"] == "in-domain FD (DAMSM image-encoder features)"
    assert "sha256:" in by_name["fd_damsm"]["feature_extractor"]
    assert by_name["fd_damsm"]["extra"]["num_reference"] == 60
    assert 0.0 <= by_name["r_precision"]["values"]["r_precision"] <= 1.0
    assert by_name["r_precision"]["extra"]["num_distractors"] == 9
    assert set(by_name["attribute_accuracy"]["values"]) == {"accuracy_colour", "accuracy_position", "accuracy_all"}
    assert all(r["num_samples"] == 60 for r in records)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["metric"] for line in lines] == ["fd_damsm", "fd_classifier", "r_precision", "attribute_accuracy"]
    assert all(set(line) == RECORD_FIELDS for line in lines)
    assert len(list((tmp_path / "cache").glob("toy-*.npz"))) == 2  # one per feature extractor


def test_reference_stats_come_from_the_cache(toy_context: MetricContext) -> None:
    first = compute("fd_damsm", toy_context)
    fresh = MetricContext(**{**toy_context.__dict__, "_memo": {}, "real_images": None})
    assert compute("fd_damsm", fresh)["values"] == first["values"]  # no real images needed: read from the cache
    fresh = MetricContext(**{**toy_context.__dict__, "_memo": {}, "real_images": None, "dataset": "other"})
    with pytest.raises(ValueError, match="real_images"):
        compute("fd_damsm", fresh)


def test_evaluate_model_with_a_tiny_pipeline(tmp_path) -> None:
    from attngan.config import GeneratorConfig, ModelConfig
    from attngan.hub import build_bundle
    from attngan.inference.pipeline import AttnGANPipeline
    from attngan.metrics import evaluate_model
    from attngan.text import PAD_TOKEN, Vocabulary

    torch.manual_seed(0)
    config = ModelConfig(
        text_encoder=TextEncoderConfig(vocab_size=12, word_embedding_dim=8, hidden_dim=8, dropout=0.0),
        generator=GeneratorConfig(text_dim=8, condition_dim=4, noise_dim=4, channels=4, num_residual=1,
                                  num_stages=2, first_stage_size=8),
        image_encoder=ImageEncoderConfig(kind="light", embedding_dim=8, image_size=32, light_channels=4),
        name="tiny")
    pipeline = AttnGANPipeline(build_bundle(config, Vocabulary([PAD_TOKEN] + [f"w{i}" for i in range(11)])))
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(1, 12, (24, 4), generator=g)
    tokens[::3, 2:] = 0  # some shorter captions
    lengths = (tokens > 0).sum(1)
    real = torch.rand(24, 3, 16, 16, generator=g) * 2 - 1

    def caption_batches():
        for i in range(0, 24, 10):
            yield {"images": [real[i:i + 10, :, ::2, ::2], real[i:i + 10]], "tokens": tokens[i:i + 10],
                   "lengths": lengths[i:i + 10], "class_ids": torch.arange(i, min(i + 10, 24)),
                   "keys": [f"k{j}" for j in range(i, min(i + 10, 24))]}

    records = evaluate_model(pipeline, caption_batches, ["fd_damsm", "r_precision"], dataset="tiny", seed=5,
                             num_samples=20, jsonl_path=tmp_path / "m.jsonl",
                             captions=CaptionPool(tokens, lengths, torch.arange(24)),
                             options={"r_distractors": 5, "r_folds": 4})
    assert [r["num_samples"] for r in records] == [20, 20]
    assert records[0]["extra"]["num_reference"] == 24 and records[0]["values"]["fd_damsm"] > 0
    assert records[0]["model"] == "tiny" and records[0]["seed"] == 5
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 2
