"""Truncation of the noise (``truncation=`` / ``--truncation``): DF-GAN's truncated normal, off by
default and then bit for bit the output without it; recorded in outputs, exports, server replies and
evaluation records; and less varied images at 0.5 than at 1.0 on the bundled model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attngan.cli import main
from attngan.data import DataSpec
from attngan.errors import SettingError
from attngan.inference.backends import ReferenceBackend
from attngan.inference.export import rows_from_output
from attngan.inference.noise import check_truncation, draw_noise, truncated_normal
from attngan.inference.pipeline import AttnGANPipeline
from attngan.metrics import EvalConfig, run_evaluation
from attngan.metrics.eval_data import train_data_classifier
from attngan.text import pad_batch

from .conftest import model_folder_with
from .test_evaluate import TINY_RECIPE

CAPTION = "a small red circle on the left"
pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def untruncated_noise(seeds: list[int], noise_dim: int, condition_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise as the pipeline drew it before truncation existed: per seed, randn z then randn eps."""
    zs, eps = [], []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        zs.append(torch.randn(noise_dim, generator=g))
        eps.append(torch.randn(condition_dim, generator=g))
    return torch.stack(zs), torch.stack(eps)


def test_truncated_normal_is_scipys_truncnorm() -> None:
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(3)
    u = torch.rand(1000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = truncated_normal(1000, g)
    assert x.dtype == torch.float32
    # the same uniform numbers through scipy's inverse CDF of the normal restricted to [-2, 2]
    np.testing.assert_allclose(x.numpy(), stats.truncnorm.ppf(u.numpy(), -2, 2), atol=1e-6)
    many = truncated_normal(200_000, torch.Generator().manual_seed(0))
    assert float(many.abs().max()) <= 2.0
    mean, var = stats.truncnorm.stats(-2, 2, moments="mv")
    assert abs(float(many.mean()) - mean) < 0.01 and abs(float(many.var()) - var) < 0.01
    # not clamped: no mass piles up at the bounds (a clamped normal puts 4.6 % there)
    assert float((many.abs() > 1.99).float().mean()) < 0.002


def test_off_is_the_untruncated_noise_and_on_scales_it() -> None:
    z, eps = draw_noise([5, 9], 7, 3)
    ref_z, ref_eps = untruncated_noise([5, 9], 7, 3)
    assert torch.equal(z, ref_z) and torch.equal(eps, ref_eps)
    z_half, eps_half = draw_noise([5, 9], 7, 3, truncation=0.5)
    assert float(z_half.abs().max()) <= 1.0 and float(eps_half.abs().max()) <= 1.0
    assert torch.equal(draw_noise([9], 7, 3, 0.5)[0][0], z_half[1])  # per seed, whatever the batch
    for bad in (0, -0.5, 1.5, math.nan):
        with pytest.raises(SettingError, match=r"^truncation: must be in \(0, 1\]") as info:
            check_truncation(bad)
        assert info.value.field == "truncation"
    with pytest.raises(TypeError, match="truncation"):
        check_truncation(True)


def test_pipeline_off_is_bit_identical_to_generation_without_truncation(tiny_model_dir: Path) -> None:
    pipe = AttnGANPipeline.from_pretrained(tiny_model_dir)
    out = pipe([CAPTION, "blue square"], num_images=2, seed=4)
    cfg = pipe.config.generator
    z, eps = untruncated_noise(out.seeds, cfg.noise_dim, cfg.condition_dim)
    tokens, lengths = pad_batch([c.ids for c in out.captions])
    with torch.inference_mode():
        words, sentence = pipe.backend.encode_text(tokens, lengths)
        direct = pipe.backend.generate(z, eps, sentence, words, tokens == 0, None)
    assert all(torch.equal(a, b.float()) for a, b in zip(out.images, direct.images))
    same = pipe([CAPTION, "blue square"], num_images=2, seed=4, truncation=1.0)
    assert all(torch.equal(a, b) for a, b in zip(out.images, same.images))
    assert out.settings["truncation"] == 1.0 and pipe.settings["truncation"] == 1.0


def test_truncation_is_the_pipelines_whatever_backend_runs(tiny_model_dir: Path) -> None:
    """The pipeline draws the noise and hands it to its backend: a backend handed over as an
    object, or chosen by name later, draws the same truncated noise."""
    fast = AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32", truncation=0.5)
    reference = AttnGANPipeline(fast.bundle, backend=ReferenceBackend(), truncation=0.5)
    a, b = fast(CAPTION, num_images=2, seed=4), reference(CAPTION, num_images=2, seed=4)
    assert a.settings["backend"] == "fast" and b.settings["backend"] == "reference"
    assert a.settings["truncation"] == b.settings["truncation"] == 0.5
    assert torch.allclose(a.images[-1], b.images[-1], atol=1e-4)  # fused twins in fp32: the same images
    fast.backend = "reference"
    assert fast.truncation == 0.5 and torch.equal(fast(CAPTION, num_images=2, seed=4).images[-1], b.images[-1])


def test_truncation_changes_the_images_reproducibly_and_is_recorded(tiny_model_dir: Path) -> None:
    pipe = AttnGANPipeline.from_pretrained(tiny_model_dir)
    off = pipe(CAPTION, num_images=2, seed=4)
    half = pipe(CAPTION, num_images=2, seed=4, truncation=0.5)
    again = AttnGANPipeline.from_pretrained(tiny_model_dir, truncation=0.5)(CAPTION, num_images=2, seed=4)
    assert torch.equal(half.images[-1], again.images[-1])
    assert (half.images[-1] - off.images[-1]).abs().max() > 1e-3
    assert half.settings["truncation"] == again.settings["truncation"] == 0.5
    rows = rows_from_output(half)
    assert {r.settings["truncation"] for r in rows} == {0.5}
    with pytest.raises(ValueError, match="truncation"):
        pipe(CAPTION, truncation=2.0)


def test_cli_generate_records_truncation_in_the_export(tiny_model_dir: Path, tmp_path: Path) -> None:
    export = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(main, ["generate", CAPTION, "--model", str(tiny_model_dir), "--seed", "1",
                                       "--truncation", "0.7", "--out", str(tmp_path / "png"), "--export",
                                       str(export)])
    assert result.exit_code == 0, result.output
    assert "truncation 0.7" in result.output
    assert json.loads(export.read_text().splitlines()[0])["settings"]["truncation"] == 0.7
    bad = CliRunner().invoke(main, ["generate", CAPTION, "--model", str(tiny_model_dir), "--truncation", "0"])
    assert bad.exit_code == 2 and "--truncation" in bad.output


def test_cli_explain_generates_with_truncation(tiny_model_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    from attngan.inference.explain import explain
    from attngan.viz import to_pil

    result = CliRunner().invoke(main, ["explain", CAPTION, "--model", str(tiny_model_dir), "--precision", "fp32",
                                       "--seed", "5", "--truncation", "0.5", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "image: generated, seed 5, truncation 0.5, 64px" in result.output
    expected = explain(AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32", truncation=0.5), CAPTION,
                       seed=5)
    drawn = np.asarray(Image.open(tmp_path / "image.png").convert("RGB"))
    assert np.array_equal(drawn, np.asarray(to_pil(expected.image[None])[0]))


def test_server_takes_truncation_per_request(tiny_model_dir: Path) -> None:
    pytest.importorskip("fastapi")
    from attngan.server import ServerSettings, create_app

    from .test_server_support import load_tiny_pipeline, make_test_client

    pipeline = load_tiny_pipeline(tiny_model_dir)
    with make_test_client(create_app(pipeline, ServerSettings(batch_wait_ms=2))) as client:
        plain = client.post("/v1/generate", json={"caption": CAPTION, "seed": 3}).json()
        half = client.post("/v1/generate", json={"caption": CAPTION, "seed": 3, "truncation": 0.5}).json()
        assert plain["settings"]["truncation"] == 1.0 and half["settings"]["truncation"] == 0.5
        png = lambda body: body["images"][0]["stages"][-1]["png_base64"]  # noqa: E731
        assert png(plain) != png(half)
        assert png(half) == png(client.post("/v1/generate", json={"caption": CAPTION, "seed": 3,
                                                                  "truncation": 0.5}).json())
        explained = client.post("/v1/explain", json={"caption": CAPTION, "seed": 3, "truncation": 0.25}).json()
        assert explained["truncation"] == 0.25
        image = client.post("/v1/generate", json={"caption": CAPTION, "seed": 3, "truncation": 1},
                            headers={"Accept": "image/png"})
        assert image.status_code == 200 and image.headers["X-Truncation"] == "1"
        for bad in (0, 1.5, "0.5", True):
            r = client.post("/v1/generate", json={"caption": CAPTION, "truncation": bad})
            assert r.status_code == 422 and r.json()["error"]["field"] == "truncation", r.text
    default_half = load_tiny_pipeline(tiny_model_dir)
    default_half.truncation = 0.5  # what attngan serve --truncation 0.5 sets
    with make_test_client(create_app(default_half, ServerSettings(batch_wait_ms=2))) as client:
        body = client.post("/v1/generate", json={"caption": CAPTION, "seed": 3}).json()
        assert body["settings"]["truncation"] == 0.5 and png(body) == png(half)


def test_truncation_lowers_diversity_of_the_bundled_model() -> None:
    """Done-when: --truncation 0.5 gives less varied images than 1.0 by the diversity metric
    (the bundled model, 8 validation captions x 4 seeds; a small scene classifier: with 6 captions the
    20,000-step model's ratio was 0.81 by the classifier's features, with 8 0.66)."""
    classifier = train_data_classifier(DataSpec("shapes"), recipe=TINY_RECIPE)
    figures = {}
    for truncation in (1.0, 0.5):
        pipe = AttnGANPipeline.from_pretrained(truncation=truncation, candidates=1, precision="fp32")
        cfg = EvalConfig(data=DataSpec("shapes", split="validation"), metrics=["diversity"], num_samples=8,
                         diversity_captions=8, diversity_seeds=4, batch_size=8)
        result = run_evaluation(pipe, cfg, classifier)
        assert result is not None
        record = result.records[0]
        assert record["generation"]["truncation"] == truncation
        figures[truncation] = record["values"]
    full, half = figures[1.0], figures[0.5]
    assert half["diversity_generated"] < 0.8 * full["diversity_generated"]
    assert half["diversity_pixels_generated"] < 0.8 * full["diversity_pixels_generated"]
    assert half["diversity_real"] == full["diversity_real"]  # the same real renderings


def test_a_model_folder_sets_its_own_default_truncation(tiny_model_dir: Path, tmp_path: Path) -> None:
    """metadata.truncation is the default of the pipeline, generate and the server; an explicit
    value, 1.0 included, overrides it; a folder without it stays off."""
    folder = model_folder_with(tiny_model_dir, tmp_path / "model", truncation=0.5)
    pipe = AttnGANPipeline.from_pretrained(folder)
    assert pipe.truncation == 0.5 and AttnGANPipeline.from_pretrained(tiny_model_dir).truncation == 1.0
    explicit = AttnGANPipeline.from_pretrained(tiny_model_dir, truncation=0.5)
    own = pipe(CAPTION, num_images=2, seed=4)
    assert own.settings["truncation"] == 0.5
    assert torch.equal(own.images[-1], explicit(CAPTION, num_images=2, seed=4).images[-1])
    off = AttnGANPipeline.from_pretrained(folder, truncation=1.0)
    assert off.truncation == 1.0
    assert torch.equal(off(CAPTION, num_images=2, seed=4).images[-1],
                       AttnGANPipeline.from_pretrained(tiny_model_dir)(CAPTION, num_images=2, seed=4).images[-1])

    export = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(main, ["generate", CAPTION, "--model", str(folder), "--seed", "1",
                                       "--out", str(tmp_path / "png"), "--export", str(export)])
    assert result.exit_code == 0, result.output
    assert "truncation 0.5" in result.output
    assert json.loads(export.read_text().splitlines()[0])["settings"]["truncation"] == 0.5

    pytest.importorskip("fastapi")
    from attngan.server import ServerSettings, create_app

    from .test_server_support import make_test_client

    with make_test_client(create_app(AttnGANPipeline.from_pretrained(folder, precision="fp32"),
                                     ServerSettings(batch_wait_ms=2))) as client:
        assert client.get("/v1/model").json()["truncation"] == 0.5
        assert client.post("/v1/generate", json={"caption": CAPTION, "seed": 3}).json()["settings"]["truncation"] == 0.5


@pytest.mark.parametrize("value", [0, 1.5, "0.5", True])
def test_a_bad_model_truncation_names_the_file(tiny_model_dir: Path, tmp_path: Path, value: object) -> None:
    from attngan.config import ConfigError

    folder = model_folder_with(tiny_model_dir, tmp_path / "model", truncation=value)
    with pytest.raises(ConfigError, match=r"config\.json: metadata\.truncation must be a number in \(0, 1\]"):
        AttnGANPipeline.from_pretrained(folder)
    assert AttnGANPipeline.from_pretrained(folder, truncation=0.5).truncation == 0.5  # an explicit value needs none
    result = CliRunner().invoke(main, ["generate", CAPTION, "--model", str(folder), "--out", str(tmp_path / "png")])
    assert result.exit_code != 0 and "metadata.truncation" in result.output and not (tmp_path / "png").exists()
