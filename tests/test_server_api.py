"""HTTP API contract: routes, response shapes, determinism, images, the original demo's route."""

from __future__ import annotations

import base64
import io

import pytest

pytest.importorskip("fastapi")

from PIL import Image  # noqa: E402

from attngan.server import ServerSettings, create_app  # noqa: E402
from attngan.server.render import images_to_png  # noqa: E402

from .test_server_support import PNG_MAGIC, load_tiny_pipeline, make_test_client  # noqa: E402

CAPTION = "a small red circle on the left"


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir):
    return load_tiny_pipeline(tiny_model_dir)


@pytest.fixture(scope="module")
def client(pipeline):
    app = create_app(pipeline, ServerSettings(max_images=4, batch_wait_ms=2))
    with make_test_client(app) as c:
        yield c


def _png(b64: str) -> bytes:
    data = base64.b64decode(b64)
    assert data.startswith(PNG_MAGIC)
    return data


def test_generate_response_shape(client, pipeline):
    r = client.post("/v1/generate", json={"caption": CAPTION + " zebra", "num_images": 2, "seed": 11})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokens"] == ["a", "small", "red", "circle", "on", "the", "left"]
    assert body["dropped"] == ["zebra"] and body["truncated"] == []
    assert body["seed"] == 11
    assert body["model"] == {"name": pipeline.name, "hash": pipeline.model_hash} and len(pipeline.model_hash) == 16
    assert body["timing_ms"] > 0 and set(body["timing"]) == {"queue_ms", "inference_ms"}
    assert [im["seed"] for im in body["images"]] == [11, 12]
    sizes = client.get("/v1/model").json()["sizes"]
    for image in body["images"]:
        assert [s["size"] for s in image["stages"]] == sizes
        assert [s["stage"] for s in image["stages"]] == [1, 2, 3]
        for stage in image["stages"]:
            assert Image.open(io.BytesIO(_png(stage["png_base64"]))).size == (stage["size"], stage["size"])
        assert image["id"] == image["stages"][-1]["id"] and image["url"] == f"/v1/images/{image['id']}.png"
        assert [a["stage"] for a in image["attention"]] == [2, 3]
        for att in image["attention"]:
            assert [w["word"] for w in att["words"]] == body["tokens"]
            overlay = Image.open(io.BytesIO(_png(att["words"][0]["png_base64"])))
            assert overlay.mode == "RGBA" and overlay.size == (att["size"], att["size"])


def test_same_seed_gives_same_png_bytes_as_the_pipeline(client, pipeline):
    first = client.post("/v1/generate", json={"caption": CAPTION, "num_images": 2, "seed": 5}).json()
    second = client.post("/v1/generate", json={"caption": CAPTION, "num_images": 2, "seed": 5}).json()
    direct = pipeline(CAPTION, num_images=2, seed=5)
    for stage in range(3):
        expected = images_to_png(direct.images[stage])
        got = [_png(im["stages"][stage]["png_base64"]) for im in first["images"]]
        assert got == expected
        assert got == [_png(im["stages"][stage]["png_base64"]) for im in second["images"]]
    other = client.post("/v1/generate", json={"caption": CAPTION, "seed": 6}).json()
    assert other["images"][0]["stages"][-1]["png_base64"] != first["images"][0]["stages"][-1]["png_base64"]


def test_random_seed_is_reported_and_reproducible(client):
    body = client.post("/v1/generate", json={"caption": CAPTION, "seed": None}).json()
    again = client.post("/v1/generate", json={"caption": CAPTION, "seed": body["seed"]}).json()
    assert again["images"][0]["stages"][-1]["png_base64"] == body["images"][0]["stages"][-1]["png_base64"]


def test_stages_and_attention_options(client):
    body = client.post("/v1/generate", json={"caption": CAPTION, "seed": 1, "stages": 2,
                                             "include_attention": False}).json()
    image = body["images"][0]
    assert len(image["stages"]) == 2 and image["attention"] == []
    assert body["settings"]["stages"] == 2 and body["settings"]["include_attention"] is False
    one = client.post("/v1/generate", json={"caption": CAPTION, "seed": 1, "stages": 1}).json()["images"][0]
    assert len(one["stages"]) == 1 and one["attention"] == []
    full = client.post("/v1/generate", json={"caption": CAPTION, "seed": 1}).json()["images"][0]
    assert full["stages"][1]["png_base64"] == image["stages"][1]["png_base64"]


def test_fetch_image_by_id(client):
    body = client.post("/v1/generate", json={"caption": CAPTION, "seed": 3}).json()
    stage = body["images"][0]["stages"][-1]
    r = client.get(stage["url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == _png(stage["png_base64"])
    missing = client.get("/v1/images/" + "0" * 32 + ".png")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for bad in ["ABC", "xyz", "0" * 31, "0" * 33, "g" * 32]:
        r = client.get(f"/v1/images/{bad}.png")
        assert r.status_code == 404 and r.json()["error"]["field"] == "image_id"


def test_accept_png_returns_the_last_stage_of_the_first_image(client):
    r = client.post("/v1/generate", json={"caption": CAPTION, "seed": 9, "num_images": 2},
                    headers={"Accept": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content.startswith(PNG_MAGIC) and r.headers["x-seed"] == "9"
    as_json = client.post("/v1/generate", json={"caption": CAPTION, "seed": 9}).json()
    assert r.content == _png(as_json["images"][0]["stages"][-1]["png_base64"])
    assert client.get(f"/v1/images/{r.headers['x-image-id']}.png").content == r.content
    both = client.post("/v1/generate", json={"caption": CAPTION, "seed": 9},
                       headers={"Accept": "application/json, image/png;q=0.5"})
    assert both.headers["content-type"].startswith("application/json")


def test_bird_route_of_the_original_demo(client):
    r = client.post("/api/v1.0/bird", json={"caption": "a big blue square", "seed": 2})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["caption"] == "a big blue square" and body["seed"] == 2
    assert len(body["images"]) == 3 and all(_png(p) for p in body["images"])
    legacy = body["bird"]
    assert [legacy[k] for k in ("small", "medium", "large")] == body["images"]
    assert _png(legacy["map1"]) and _png(legacy["map2"]) and legacy["caption"] == body["caption"]
    # one tile per word, each at least 128 px although the stage 2 image is 32 px
    assert Image.open(io.BytesIO(_png(legacy["map1"]))).size == (4 * 128, 128)
    assert client.post("/api/v1.0/bird", json={}).json()["error"]["field"] == "caption"
    generated = client.post("/v1/generate", json={"caption": "a big blue square", "seed": 2}).json()
    assert [s["png_base64"] for s in generated["images"][0]["stages"]] == body["images"]


def test_explain_returns_the_intermediates(client, pipeline):
    r = client.post("/v1/explain", json={"caption": CAPTION + " zebra", "seed": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    text = body["text_encoder"]
    d = pipeline.config.text_encoder.hidden_dim
    assert text["tokens"] == ["a", "small", "red", "circle", "on", "the", "left"] and body["dropped"] == ["zebra"]
    assert text["word_features_shape"] == [7, d] and len(text["word_norms"]) == 7
    assert Image.open(io.BytesIO(_png(text["word_features_png"]))).size == (d, 7)
    assert len(text["sentence"]["values"]) == d
    c = pipeline.config.generator.condition_dim
    assert all(len(body["conditioning"][k]["values"]) == c for k in ("mu", "sigma", "condition"))
    assert all(v > 0 for v in body["conditioning"]["sigma"]["values"])
    assert len(body["stages"]) == 3 and [a["stage"] for a in body["attention"]] == [2, 3]
    assert body["damsm"]["available"] is True and len(body["damsm"]["words"]) == 7
    generated = client.post("/v1/generate", json={"caption": CAPTION + " zebra", "seed": 4}).json()
    assert generated["images"][0]["stages"][-1]["png_base64"] == body["stages"][-1]["png_base64"]


def test_model_health_and_ready(client, pipeline):
    info = client.get("/v1/model").json()
    assert info["name"] == pipeline.name and info["stages"] == 3 and info["vocabulary_size"] == len(pipeline.vocab)
    out = pipeline(CAPTION, seed=0)
    assert info["sizes"] == [int(t.shape[-1]) for t in out.images]
    assert info["attention_sizes"] == [int(t.shape[-1]) for t in out.attention_maps]
    assert info["example_captions"] == []  # the tiny model's folder stores none
    g = pipeline.config.generator
    assert info["architecture"] == {
        "rnn": "lstm", "bidirectional": True, "word_embedding_dim": pipeline.config.text_encoder.word_embedding_dim,
        "text_dim": g.text_dim, "condition_dim": g.condition_dim, "noise_dim": g.noise_dim, "channels": g.channels,
        "variant": "multi_stage", "damsm": True, "image_encoder": "light"}
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").status_code == 200


def test_pages_docs_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for marker in ('id="caption"', 'id="seed"', 'id="count"', 'id="generate"', 'id="error"'):
        assert marker in page.text
    explain = client.get("/explain")
    assert explain.status_code == 200 and 'id="step-damsm"' in explain.text
    for name, kind in [("style.css", "text/css"), ("app.js", "text/javascript"), ("explain.js", "text/javascript"),
                       ("common.js", "text/javascript")]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert r.headers["x-content-type-options"] == "nosniff"
    for text in (page.text, explain.text, *(client.get(f"/static/{n}").text for n in ("app.js", "explain.js"))):
        assert "http://" not in text and "https://" not in text  # no CDN
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/v1/generate", "/v1/explain", "/api/v1.0/bird", "/v1/model", "/healthz", "/readyz"} <= set(schema["paths"])
    assert "images" in schema["info"]["description"] and "/api/v1.0/bird" in schema["info"]["description"]


def test_model_examples_and_damsm_settings_come_from_the_folder(tmp_path):
    import dataclasses

    import torch

    from attngan.config import DAMSMLossConfig
    from attngan.hub import save_pretrained
    from attngan.losses.damsm import word_image_similarity

    from .conftest import make_tiny_bundle
    from .test_server_support import load_tiny_pipeline

    bundle = make_tiny_bundle()
    bundle.metadata["example_captions"] = ["a big blue square on the left", "zebra okapi", "a tiny red circle"]
    bundle.config = dataclasses.replace(bundle.config, damsm=DAMSMLossConfig(gamma1=1.5, gamma2=9.0))
    pipeline = load_tiny_pipeline(save_pretrained(bundle, tmp_path / "model"))
    with make_test_client(create_app(pipeline, ServerSettings(batch_wait_ms=1))) as c:
        info = c.get("/v1/model").json()
        body = c.post("/v1/explain", json={"caption": "a big blue square", "seed": 3}).json()
    # "zebra okapi" has no word the model knows: the page could not use it
    assert info["example_captions"] == ["a big blue square on the left", "a tiny red circle"]
    out = pipeline("a big blue square", seed=3, return_intermediates=True)
    words = out.intermediates["word_features"][:, :, :4].float()
    with torch.inference_mode():
        regions, _ = pipeline.bundle.image_encoder(out.images[-1].float())

    def score(gamma1: float, gamma2: float) -> float:
        value, _ = word_image_similarity(regions, words, torch.tensor([4]), gamma1, gamma2)
        return round(float(value[0, 0]), 5)

    assert body["damsm"]["word_region_score"] == pytest.approx(score(1.5, 9.0), abs=2e-5)
    assert abs(score(1.5, 9.0) - score(4.0, 5.0)) > 1e-3  # the original's constants would give another score


def test_image_cache_is_bounded_by_count_and_bytes():
    from attngan.server.resources import PngStore

    cache = PngStore(max_items=3, max_bytes=100)
    first, second = cache.put(b"a" * 40), cache.put(b"b" * 40)
    assert cache.get(first) == b"a" * 40  # now the most recently used
    third = cache.put(b"c" * 40)  # 120 bytes: the least recently used goes
    assert cache.get(second) is None and cache.get(first) is not None and cache.get(third) is not None
    assert len(cache) == 2 and cache.total_bytes == 80
    for _ in range(3):
        cache.put(b"d")
    assert len(cache) == 3 and cache.total_bytes == 3  # the count bound: only the three newest are kept
