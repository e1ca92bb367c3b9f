"""Property-based fuzzing of the OpenAPI schema (schemathesis + hypothesis).

Valid and invalid requests generated from the server's own ``/openapi.json`` go to a real
uvicorn server on 127.0.0.1, and every response goes through schemathesis' checks: no 5xx,
a documented status code, content type and headers, a body that conforms to the declared
schema, invalid requests refused and valid ones accepted. The one exception: a schema-valid
caption with no word in the model's vocabulary is refused (422 ``unknown_words``); the
vocabulary is no part of the schema. The server is fuzzed without an API key, and with one
both by clients that lack it (every protected route answers a conforming 401) and by clients
that send it. The number of examples is bounded so the tests stay short.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

import httpx  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import CHECKS, load_all_checks  # noqa: E402

from attngan.server import ServerSettings, create_app  # noqa: E402

from .test_server_support import PNG_MAGIC, LiveServer, load_tiny_pipeline  # noqa: E402

log = logging.getLogger(__name__)
API_KEY = "fuzz-key-0123"
MAX_EXAMPLES = 300
PROTECTED = {"/v1/generate", "/v1/explain", "/api/v1.0/bird", "/v1/images/{image_id}.png"}

load_all_checks()
BUILTIN = {check.__name__: check for check in CHECKS.get_all()}


def positive_data_acceptance(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' check, except for the vocabulary refusal no schema can state."""
    if response.status_code == 422 and json.loads(response.content)["error"]["code"] == "unknown_words":
        return None
    return BUILTIN["positive_data_acceptance"](ctx, response, case)


CHECKS_RUN = [BUILTIN[name] for name in (
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
    "response_schema_conformance", "negative_data_rejection", "missing_required_header", "ignored_auth",
    "allow_header_conformance")] + [positive_data_acceptance]


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir):
    return load_tiny_pipeline(tiny_model_dir)


KNOWN_BODIES = [  # valid requests whose captions have known words (generated captions seldom do)
    ("/v1/generate", {"caption": "a small red circle", "seed": 1, "num_images": 2}, {}),
    ("/v1/generate", {"caption": "red", "stages": 1, "include_attention": False, "seed": None}, {}),
    ("/v1/generate", {"caption": "blue square on the left", "seed": 2}, {"Accept": "image/png"}),
    ("/v1/explain", {"caption": "blue square", "seed": 3, "stages": 2}, {}),
    ("/api/v1.0/bird", {"caption": "green triangle"}, {}),
]


def _fuzz(app: Any, max_examples: int, headers: dict[str, str] | None = None) -> Counter[tuple[str, int]]:
    """Known-word requests, then ``max_examples`` generated ones, all through every check;
    returns the (path, status) counts."""
    statuses: Counter[tuple[str, int]] = Counter()
    with LiveServer(app) as server:
        spec = httpx.get(server.url + "/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(spec)

        def run(case: schemathesis.Case) -> Any:
            response = case.call(base_url=server.url, headers=headers, timeout=20)
            statuses[(case.path, response.status_code)] += 1
            sent = {**(case.headers or {}), **(headers or {})}
            case.validate_response(response, checks=CHECKS_RUN, headers=sent)
            assert b"Traceback" not in response.content
            if response.status_code >= 400:
                error = json.loads(response.content)["error"]
                assert error["code"] and error["message"], response.content
            elif response.headers.get("content-type", [""])[0] == "image/png":
                assert response.content.startswith(PNG_MAGIC)
            return response

        for path, body, extra in KNOWN_BODIES:
            response = run(schema[path]["POST"].Case(body=body, media_type="application/json", headers=extra))
            if path == "/v1/generate" and response.status_code == 200 and "Accept" not in extra:
                image_id = json.loads(response.content)["images"][0]["id"]
                run(schema["/v1/images/{image_id}.png"]["GET"].Case(path_parameters={"image_id": image_id}))

        @settings(max_examples=max_examples, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(schema.as_strategy(schemathesis.GenerationMode.POSITIVE),
                              schema.as_strategy(schemathesis.GenerationMode.NEGATIVE)))
        def fuzz(case: schemathesis.Case) -> None:
            run(case)

        fuzz()
    log.info("fuzzing: (path, status) counts %s", dict(sorted(statuses.items())))
    return statuses


def test_openapi_declares_the_error_model_and_every_limit(pipeline):
    spec = create_app(pipeline, ServerSettings(max_images=3)).openapi()
    assert "HTTPValidationError" not in json.dumps(spec)  # every error is {"error": {...}}
    body = spec["components"]["schemas"]["GenerateRequest"]["properties"]
    assert (body["caption"]["minLength"], body["caption"]["maxLength"]) == (1, 1000)
    assert (body["num_images"]["minimum"], body["num_images"]["maximum"]) == (1, 3)
    assert body["seed"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": 2**53}
    assert body["stages"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 3}


def test_fuzz_without_an_api_key(pipeline):
    app = create_app(pipeline, ServerSettings(max_images=3, batch_wait_ms=1))
    statuses = _fuzz(app, max_examples=MAX_EXAMPLES)
    assert sum(statuses.values()) >= MAX_EXAMPLES // 2
    ok = {path for path, s in statuses if 200 <= s < 300}
    assert ok >= PROTECTED | {"/healthz", "/readyz", "/v1/model"}, statuses  # every route answered a 2xx
    assert any(400 <= s < 500 for _, s in statuses)


def test_fuzz_with_an_api_key_by_clients_without_it(pipeline):
    app = create_app(pipeline, ServerSettings(max_images=3, batch_wait_ms=1, api_key=API_KEY))
    statuses = _fuzz(app, max_examples=MAX_EXAMPLES // 2)
    protected = {s for (path, s) in statuses if path in PROTECTED}
    assert protected == {401}, statuses
    assert any(path not in PROTECTED and s == 200 for path, s in statuses)


def test_fuzz_with_an_api_key_by_clients_that_send_it(pipeline):
    app = create_app(pipeline, ServerSettings(max_images=3, batch_wait_ms=1, api_key=API_KEY))
    statuses = _fuzz(app, max_examples=MAX_EXAMPLES // 2, headers={"X-API-Key": API_KEY})
    assert not any(s == 401 for _, s in statuses), statuses
    assert {path for path, s in statuses if 200 <= s < 300} >= PROTECTED, statuses
