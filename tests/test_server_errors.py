"""Bad input, API keys, CORS, path traversal and unexpected errors: always a JSON 4xx/5xx, no traceback."""

from __future__ import annotations

import json
import logging
import socket

import pytest

pytest.importorskip("fastapi")

from attngan.server import ServerSettings, create_app  # noqa: E402

from .test_server_support import LiveServer, load_tiny_pipeline, make_test_client  # noqa: E402

MAX_IMAGES = 4


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir):
    return load_tiny_pipeline(tiny_model_dir)


@pytest.fixture(scope="module")
def client(pipeline):
    with make_test_client(create_app(pipeline, ServerSettings(max_images=MAX_IMAGES, batch_wait_ms=1))) as c:
        yield c


def _error(response, status: int, field: str | None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "field"} and error["message"]
    assert error["field"] == field, error
    return error


BAD_BODIES = [
    ("invalid json", "{bad json", 400, "body"),
    ("truncated json", '{"caption": "red', 400, "body"),
    ("body is a list", "[1, 2]", 422, "body"),
    ("body is null", "null", 422, "body"),
    ("body is a string", '"red circle"', 422, "body"),
    ("caption is a number", {"caption": 5}, 422, "caption"),
    ("caption is a list", {"caption": ["red"]}, 422, "caption"),
    ("caption is null", {"caption": None}, 422, "caption"),
    ("missing caption", {"num_images": 1}, 422, "caption"),
    ("empty object", {}, 422, "caption"),
    ("empty caption", {"caption": ""}, 422, "caption"),
    ("whitespace caption", {"caption": " \t\n  "}, 422, "caption"),
    ("10,000-character caption", {"caption": "red " * 2500}, 422, "caption"),
    ("num_images as string", {"caption": "red", "num_images": "2"}, 422, "num_images"),
    ("num_images as float", {"caption": "red", "num_images": 2.5}, 422, "num_images"),
    ("num_images as bool", {"caption": "red", "num_images": True}, 422, "num_images"),
    ("num_images 0", {"caption": "red", "num_images": 0}, 422, "num_images"),
    ("num_images negative", {"caption": "red", "num_images": -3}, 422, "num_images"),
    ("num_images above the limit", {"caption": "red", "num_images": MAX_IMAGES + 1}, 422, "num_images"),
    ("num_images huge", {"caption": "red", "num_images": 10**12}, 422, "num_images"),
    ("seed negative", {"caption": "red", "seed": -1}, 422, "seed"),
    ("seed above 2**53", {"caption": "red", "seed": 2**53 + 1}, 422, "seed"),
    ("seed huge", {"caption": "red", "seed": 10**40}, 422, "seed"),
    ("seed as string", {"caption": "red", "seed": "42"}, 422, "seed"),
    ("seed as float", {"caption": "red", "seed": 1.5}, 422, "seed"),
    ("stages 0", {"caption": "red", "stages": 0}, 422, "stages"),
    ("stages above the model's", {"caption": "red", "stages": 4}, 422, "stages"),
    ("include_attention as string", {"caption": "red", "include_attention": "yes"}, 422, "include_attention"),
    ("unknown field", {"caption": "red", "steps": 50}, 422, "steps"),
]


@pytest.mark.parametrize(("name", "body", "status", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_generate_bodies(client, name, body, status, field):
    content = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/v1/generate", content=content, headers={"Content-Type": "application/json"})
    _error(response, status, field)


def test_a_body_that_is_not_utf8_is_400_invalid_json(client):
    response = client.post("/v1/generate", content=b'{"caption": "red \xff"}', headers={"Content-Type": "application/json"})
    assert _error(response, 400, "body")["code"] == "invalid_json"


def test_whole_numbers_written_with_a_fraction_are_integers(client):
    """JSON Schema counts 2.0 as an integer; so does the server (2.5 stays an error above)."""
    response = client.post("/v1/generate", json={"caption": "red", "num_images": 2.0, "seed": 5.0, "stages": 2.0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["seed"] == 5 and [im["seed"] for im in body["images"]] == [5, 6]
    assert len(body["images"][0]["stages"]) == 2


@pytest.mark.parametrize("route", ["/v1/explain", "/api/v1.0/bird"])
def test_other_routes_name_the_field(client, route):
    _error(client.post(route, json={"caption": 3}), 422, "caption")
    _error(client.post(route, json={"caption": "red", "extra": 1}), 422, "extra")
    _error(client.post(route, content="{", headers={"Content-Type": "application/json"}), 400, "body")


def test_only_unknown_words_is_422_with_the_words(client):
    error = _error(client.post("/v1/generate", json={"caption": "Zebra quokka!"}), 422, "caption")
    assert error["code"] == "unknown_words" and error["words"] == ["zebra", "quokka"]
    emoji_only = _error(client.post("/v1/generate", json={"caption": "\U0001f426\U0001f308 !!"}), 422, "caption")
    assert emoji_only["words"] == []


@pytest.mark.parametrize("caption", [
    "red\x00 circle\x07 on\x1b[31m the left",
    "a red \U0001f426 circle \U0001f308 on the left",
    "RED\u202e circle\u200b \ufeffleft",
    "tr\u00e8s red circle \u6f22\u5b57",
    "red\r\ncircle\ttop",
])
def test_control_characters_and_emoji_work_or_fail_cleanly(client, caption):
    response = client.post("/v1/generate", json={"caption": caption, "seed": 1})
    assert response.status_code < 500 and "Traceback" not in response.text
    if response.status_code == 200:
        body = response.json()
        assert "red" in body["tokens"] and all(t.isascii() for t in body["tokens"])
    else:
        _error(response, response.status_code, "caption")


def test_oversized_body_is_413(client):
    big = json.dumps({"caption": "red " * 20_000})
    _error(client.post("/v1/generate", content=big, headers={"Content-Type": "application/json"}), 413, "body")

    def chunks():  # no Content-Length: the body is counted as it arrives
        yield b'{"caption": "'
        for _ in range(100):
            yield b"red " * 256
        yield b'"}'

    _error(client.post("/v1/generate", content=chunks(), headers={"Content-Type": "application/json"}), 413, "body")


def test_unknown_route_and_method_are_json(client):
    assert _error(client.get("/v2/nothing"), 404, None)["code"] == "not_found"
    assert _error(client.get("/v1/generate"), 405, None)["code"] == "method_not_allowed"


class _Exploding:
    """A pipeline that fails inside the worker with a message that must not reach the client."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, *args, **kwargs):
        raise RuntimeError("secret internal detail /home/model")


def test_unexpected_errors_are_a_generic_500_logged_server_side(pipeline, caplog):
    app = create_app(_Exploding(pipeline), ServerSettings(batch_wait_ms=0))
    with make_test_client(app) as c, caplog.at_level(logging.ERROR):
        response = c.post("/v1/generate", json={"caption": "red circle"})
        assert c.get("/healthz").status_code == 200  # the worker survives
    error = _error(response, 500, None)
    assert error["code"] == "internal_error" and "secret" not in response.text
    assert "secret internal detail" in caplog.text and "Traceback" in caplog.text


# ---------------------------------------------------------------------------- API key
@pytest.fixture(scope="module")
def keyed_client(pipeline):
    with make_test_client(create_app(pipeline, ServerSettings(api_key="s3cret-key", batch_wait_ms=1))) as c:
        yield c


@pytest.mark.parametrize("route", ["/v1/generate", "/v1/explain", "/api/v1.0/bird"])
def test_api_key_is_required_on_generation_routes(keyed_client, route):
    body = {"caption": "red circle", "seed": 1}
    missing = keyed_client.post(route, json=body)
    assert _error(missing, 401, "X-API-Key")["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    _error(keyed_client.post(route, json=body, headers={"X-API-Key": "s3cret-kez"}), 401, "X-API-Key")
    _error(keyed_client.post(route, json=body, headers={"Authorization": "Bearer wrong"}), 401, "X-API-Key")
    _error(keyed_client.post(route, json=body, headers={"X-API-Key": ""}), 401, "X-API-Key")
    assert keyed_client.post(route, json=body, headers={"X-API-Key": "s3cret-key"}).status_code in (200, 201)
    assert keyed_client.post(route, json=body, headers={"Authorization": "Bearer s3cret-key"}).status_code in (200, 201)


@pytest.mark.parametrize("body", ["{bad json", b"\xff\xfe", '{"caption": 5}', '{"caption": "red"}'])
def test_without_the_key_every_body_gets_the_same_401(keyed_client, body):
    """The key is checked before the body is read: a client without it learns nothing of the body."""
    response = keyed_client.post("/v1/generate", content=body, headers={"Content-Type": "application/json"})
    assert _error(response, 401, "X-API-Key")["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer" and response.headers["x-content-type-options"] == "nosniff"
    assert _error(keyed_client.get("/v1/generate"), 401, "X-API-Key")  # any method of a protected route


def test_api_key_protects_images_but_not_health_or_pages(keyed_client):
    body = keyed_client.post("/v1/generate", json={"caption": "red"}, headers={"X-API-Key": "s3cret-key"}).json()
    url = body["images"][0]["url"]
    _error(keyed_client.get(url), 401, "X-API-Key")
    assert keyed_client.get(url, headers={"X-API-Key": "s3cret-key"}).status_code == 200
    for path in ["/healthz", "/readyz", "/v1/model", "/", "/explain", "/static/app.js", "/openapi.json"]:
        assert keyed_client.get(path).status_code == 200, path


# ---------------------------------------------------------------------------- CORS
def test_cors_is_off_by_default(client):
    r = client.get("/v1/model", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options("/v1/generate", headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers


def test_cors_allows_only_the_configured_origins(pipeline):
    app = create_app(pipeline, ServerSettings(cors_origins=("http://app.test",)))
    with make_test_client(app) as c:
        ok = c.options("/v1/generate", headers={"Origin": "http://app.test", "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "content-type,x-api-key"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://app.test"
        r = c.post("/v1/generate", json={"caption": "red"}, headers={"Origin": "http://app.test"})
        assert r.headers["access-control-allow-origin"] == "http://app.test"
        other = c.get("/v1/model", headers={"Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in other.headers


def test_with_an_api_key_preflights_pass_and_refusals_carry_cors_headers(pipeline):
    app = create_app(pipeline, ServerSettings(api_key="s3cret-key", cors_origins=("http://app.test",)))
    with make_test_client(app) as c:
        pre = c.options("/v1/generate", headers={"Origin": "http://app.test", "Access-Control-Request-Method": "POST",
                                                 "Access-Control-Request-Headers": "content-type,x-api-key"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://app.test"
        refused = c.post("/v1/generate", json={"caption": "red"}, headers={"Origin": "http://app.test"})
        _error(refused, 401, "X-API-Key")
        assert refused.headers["access-control-allow-origin"] == "http://app.test"  # the page can read why


# ---------------------------------------------------------------------------- path traversal
TRAVERSALS = [
    "/static/../../etc/passwd",
    "/static/..%2f..%2fetc%2fpasswd",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/static/%252e%252e%252fetc%252fpasswd",
    "/static/..%5c..%5cetc%5cpasswd",
    "/static/....//....//etc/passwd",
    "/static//etc/passwd",
    "/static/%00../../etc/passwd",
    "/static/style.css/../../../../etc/passwd",
    "/static/..",
    "/static/.",
    "/static/app.py",
    "/static/__init__.py",
    "/v1/images/../../etc/passwd.png",
    "/v1/images/..%2f..%2fetc%2fpasswd.png",
    "/v1/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd.png",
    "/v1/images/....png",
    "/v1/images/%2fetc%2fpasswd.png",
    "/v1/images/..%5c..%5cwin.ini.png",
]


def _no_file_content(status: int, text: str) -> None:
    assert status in (400, 404), status
    assert "root:" not in text and "[extensions]" not in text and "import " not in text


@pytest.mark.parametrize("path", [p for p in TRAVERSALS if not p.endswith(("/..", "/."))])  # the client resolves these
def test_path_traversal_through_the_client(client, path):
    r = client.get(path)
    _no_file_content(r.status_code, r.text)


def test_path_traversal_on_the_wire(pipeline):
    """Raw request lines, exactly as written (no client normalises them), against uvicorn."""
    with LiveServer(create_app(pipeline)) as server:
        for path in TRAVERSALS:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            _no_file_content(status, body.decode("utf-8", "replace"))
