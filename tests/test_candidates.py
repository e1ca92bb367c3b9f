"""Best of K candidates (``candidates=`` / ``--candidates``): candidate 0 is the plain image, the
kept image is the candidate the model's DAMSM scores highest, the same seed gives the same image in
any batch, and the setting is recorded in outputs, exports, evaluation headers and server replies;
a model folder may set its own default, checked with an error naming its file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from attngan.cli import main
from attngan.config import ConfigError
from attngan.errors import SettingError
from attngan.inference.candidates import match_scores, merge_candidates, select_rows
from attngan.inference.export import rows_from_output
from attngan.inference.noise import draw_candidate_noise, draw_noise
from attngan.inference.pipeline import AttnGANPipeline
from attngan.text import pad_batch

from .conftest import model_folder_with

CAPTION = "a small red circle on the left"
pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def test_candidate_zero_is_the_plain_noise_and_the_rest_follow_from_the_seed() -> None:
    draws = draw_candidate_noise([5, 9], 7, 3, 1.0, 3)
    z, eps = draw_noise([5, 9], 7, 3)
    assert len(draws) == 3 and torch.equal(draws[0][0], z) and torch.equal(draws[0][1], eps)
    g = torch.Generator().manual_seed(9)
    stream = [torch.randn(7, generator=g), torch.randn(3, generator=g), torch.randn(7, generator=g),
              torch.randn(3, generator=g), torch.randn(7, generator=g)]
    assert torch.equal(draws[1][0][1], stream[2]) and torch.equal(draws[2][0][1], stream[4])
    assert not torch.equal(draws[1][0], draws[2][0])
    half = draw_candidate_noise([5], 7, 3, 0.5, 2)
    assert float(half[1][0].abs().max()) <= 1.0 and torch.equal(half[0][0], draw_noise([5], 7, 3, 0.5)[0])
    with pytest.raises(SettingError, match="candidates"):
        draw_candidate_noise([5], 7, 3, 1.0, 0)


def test_select_rows_and_merge_take_each_row_from_the_better_candidate() -> None:
    old = {"images": [torch.zeros(3, 2, 4, 4)], "attention": [torch.zeros(3, 5, 2, 2)],
           "intermediates": {"noise": torch.zeros(3, 6)}}
    new = {"images": [torch.ones(3, 2, 4, 4)], "attention": [torch.ones(3, 5, 2, 2)],
           "intermediates": {"noise": torch.ones(3, 6)}}
    better = torch.tensor([True, False, True])
    merged = merge_candidates(better, new, old)
    for t in (merged["images"][0], merged["attention"][0], merged["intermediates"]["noise"]):
        assert t.flatten(1).mean(1).tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="differ in shape"):
        select_rows(better, torch.ones(3, 2), torch.ones(3, 4))


def test_the_kept_image_is_the_best_scored_candidate(tiny_model_dir: Path) -> None:
    pipe = AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32")
    captions = [CAPTION, "a large blue square at the top", "green star"]
    best = pipe(captions, seed=11, candidates=4)
    assert best.settings["candidates"] == 4 and pipe.settings["candidates"] == 1
    tokens, lengths = pad_batch([c.ids for c in best.captions])
    cfg = pipe.config.generator
    with torch.inference_mode():
        words, sentence = pipe.backend.encode_text(tokens, lengths)
        drawn, scores = [], []
        for z, eps in draw_candidate_noise(best.seeds, cfg.noise_dim, cfg.condition_dim, 1.0, 4):
            image = pipe.backend.generate(z, eps, sentence, words, tokens == 0, None).images[-1].float()
            drawn.append(image)
            scores.append(match_scores(pipe.bundle.image_encoder, image, sentence))
    chosen = torch.stack(scores).argmax(0)
    for i in range(len(captions)):
        assert torch.equal(best.images[-1][i], drawn[int(chosen[i])][i])
    assert torch.equal(pipe(captions, seed=11).images[-1], drawn[0])  # one candidate: candidate 0
    assert int(chosen.max()) > 0, "with 4 candidates a random model should prefer a later one somewhere"


def test_candidates_do_not_depend_on_the_batch_and_are_recorded(tiny_model_dir: Path) -> None:
    pipe = AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32", candidates=3)
    together = pipe([CAPTION, "blue square"], num_images=2, seed=4, batch_size=4, return_intermediates=True)
    alone = pipe([CAPTION, "blue square"], num_images=2, seed=4, batch_size=1, return_intermediates=True)
    # batched kernels may round the last float bits differently; the same candidates are kept
    assert (together.images[-1] - alone.images[-1]).abs().max() <= 1e-5
    assert torch.equal(together.intermediates["noise"], alone.intermediates["noise"])
    assert {r.settings["candidates"] for r in rows_from_output(together)} == {3}
    with pytest.raises(SettingError, match="candidates"):
        pipe(CAPTION, candidates=0)
    with pytest.raises(TypeError, match="candidates"):
        pipe(CAPTION, candidates=2.5)  # type: ignore[arg-type]


def test_candidates_need_the_image_encoder(tiny_model_dir: Path) -> None:
    pipe = AttnGANPipeline.from_pretrained(tiny_model_dir)
    pipe.bundle.image_encoder = None
    assert len(pipe(CAPTION)) == 1  # one candidate needs no encoder
    with pytest.raises(SettingError, match="DAMSM image encoder"):
        pipe(CAPTION, candidates=2)
    with pytest.raises(SettingError, match="DAMSM image encoder"):
        AttnGANPipeline(pipe.bundle, candidates=2)


def test_a_model_folder_sets_its_own_candidates(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = model_folder_with(tiny_model_dir, tmp_path / "model", candidates=3)
    own = AttnGANPipeline.from_pretrained(folder)
    assert own.candidates == 3 and AttnGANPipeline.from_pretrained(folder, candidates=1).candidates == 1
    explicit = AttnGANPipeline.from_pretrained(tiny_model_dir, candidates=3)
    assert torch.equal(own(CAPTION, seed=2).images[-1], explicit(CAPTION, seed=2).images[-1])

    export = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(main, ["generate", CAPTION, "--model", str(folder), "--seed", "1",
                                       "--out", str(tmp_path / "png"), "--export", str(export)])
    assert result.exit_code == 0, result.output
    assert "best of 3 candidates" in result.output
    assert json.loads(export.read_text().splitlines()[0])["settings"]["candidates"] == 3
    off = CliRunner().invoke(main, ["generate", CAPTION, "--model", str(folder), "--candidates", "1",
                                    "--out", str(tmp_path / "png1")])
    assert off.exit_code == 0 and "candidates" not in off.output
    bad = CliRunner().invoke(main, ["generate", CAPTION, "--model", str(folder), "--candidates", "0"])
    assert bad.exit_code == 2 and "--candidates" in bad.output

    pytest.importorskip("fastapi")
    from attngan.server import ServerSettings, create_app

    from .test_server_support import make_test_client

    with make_test_client(create_app(AttnGANPipeline.from_pretrained(folder, precision="fp32"),
                                     ServerSettings(batch_wait_ms=2))) as client:
        assert client.get("/v1/model").json()["candidates"] == 3
        body = client.post("/v1/generate", json={"caption": CAPTION, "seed": 3}).json()
        assert body["settings"]["candidates"] == 3


@pytest.mark.parametrize("value", [0, 2.5, "3", True])
def test_a_bad_model_candidates_names_the_file(tiny_model_dir: Path, tmp_path: Path, value: object) -> None:
    folder = model_folder_with(tiny_model_dir, tmp_path / "model", candidates=value)
    with pytest.raises(ConfigError, match=r"config\.json: metadata\.candidates must be an integer >= 1"):
        AttnGANPipeline.from_pretrained(folder)
    assert AttnGANPipeline.from_pretrained(folder, candidates=2).candidates == 2
    result = CliRunner().invoke(main, ["generate", CAPTION, "--model", str(folder), "--out", str(tmp_path / "png")])
    assert result.exit_code != 0 and "metadata.candidates" in result.output and not (tmp_path / "png").exists()


def test_server_takes_candidates_per_request(tiny_model_dir: Path) -> None:
    pytest.importorskip("fastapi")
    from attngan.server import ServerSettings, create_app

    from .test_server_support import make_test_client

    pipe = AttnGANPipeline.from_pretrained(tiny_model_dir, precision="fp32")
    expected = pipe(CAPTION, seed=3, candidates=3)
    with make_test_client(create_app(pipe, ServerSettings(batch_wait_ms=2))) as client:
        plain = client.post("/v1/generate", json={"caption": CAPTION, "seed": 3}).json()
        best = client.post("/v1/generate", json={"caption": CAPTION, "seed": 3, "candidates": 3}).json()
        assert plain["settings"]["candidates"] == 1 and best["settings"]["candidates"] == 3
        png = lambda body: body["images"][0]["stages"][-1]["png_base64"]  # noqa: E731
        differs = not torch.equal(expected.images[-1], pipe(CAPTION, seed=3).images[-1])
        assert (png(plain) != png(best)) == differs  # the pipeline's choice, as the library makes it
        explained = client.post("/v1/explain", json={"caption": CAPTION, "seed": 3, "candidates": 3}).json()
        assert explained["candidates"] == 3
        assert explained["stages"][-1]["png_base64"] == png(best)  # the explainer shows the same image
        image = client.post("/v1/generate", json={"caption": CAPTION, "seed": 3, "candidates": 2},
                            headers={"Accept": "image/png"})
        assert image.status_code == 200 and image.headers["X-Candidates"] == "2"
        for bad in (0, 65, 2.5, "3", True):
            r = client.post("/v1/generate", json={"caption": CAPTION, "candidates": bad})
            assert r.status_code == 422 and r.json()["error"]["field"] == "candidates", r.text
