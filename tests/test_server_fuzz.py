"""Property-based fuzzing of the OpenAPI schema (schemathesis + hypothesis): never a 5xx.

Valid and invalid requests generated from the server's own ``/openapi.json`` go to a real
uvicorn server on 127.0.0.1. The number of examples is bounded so the test stays short.
"""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

import httpx  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from attngan.server import ServerSettings, create_app  # noqa: E402

from .test_server_support import LiveServer, load_tiny_pipeline  # noqa: E402

log = logging.getLogger(__name__)
MAX_EXAMPLES = 100


def test_fuzz_the_openapi_schema_never_gives_a_server_error(tiny_model_dir):
    app = create_app(load_tiny_pipeline(tiny_model_dir), ServerSettings(max_images=3, batch_wait_ms=1))
    statuses: dict[int, int] = {}
    with LiveServer(app) as server:
        spec = httpx.get(server.url + "/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(spec)
        cases = st.one_of(schema.as_strategy(schemathesis.GenerationMode.POSITIVE),
                          schema.as_strategy(schemathesis.GenerationMode.NEGATIVE))

        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate, Phase.shrink],
                  suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url, timeout=20)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            described = f"{case.method} {case.formatted_path} body={str(case.body)[:200]!r}"
            assert response.status_code < 500, f"{described} -> {response.status_code} {response.text[:300]}"
            assert "Traceback" not in response.text, described
            if response.status_code >= 400:
                error = json.loads(response.text)["error"]
                assert error["code"] and error["message"], described

        check()
    log.info("fuzzing: status counts %s", dict(sorted(statuses.items())))
    assert sum(statuses.values()) >= MAX_EXAMPLES // 2
    assert any(200 <= s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses)
