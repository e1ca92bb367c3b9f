"""A short load test: a real uvicorn server on 127.0.0.1, 8 concurrent clients, zero errors, stable memory."""

from __future__ import annotations

import gc
import logging
import statistics
import threading
import time

import pytest

pytest.importorskip("fastapi")

import httpx  # noqa: E402

from attngan.server import ServerSettings, create_app  # noqa: E402

from .test_server_support import LiveServer, load_tiny_pipeline, rss_bytes  # noqa: E402

log = logging.getLogger(__name__)

CLIENTS = 8
REQUESTS_PER_CLIENT = 12
TIME_LIMIT_S = 15.0
RSS_MARGIN = 120 * 2**20
CAPTIONS = ["a small red circle on the left", "a big blue square on the top", "green triangle center",
            "a tiny yellow circle on the bottom right", "red square of the image"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _client(url: str, index: int, deadline: float, latencies: list[float], errors: list[str], lock: threading.Lock) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        for k in range(REQUESTS_PER_CLIENT):
            if time.monotonic() > deadline:
                break
            body = {"caption": CAPTIONS[(index + k) % len(CAPTIONS)], "num_images": 1 + (k % 2), "seed": index * 100 + k}
            started = time.perf_counter()
            try:
                response = http.post("/v1/generate", json=body)
                ok = response.status_code == 200 and len(response.json()["images"]) == body["num_images"]
                problem = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            with lock:
                latencies.append(time.perf_counter() - started)
                if problem:
                    errors.append(problem)


def test_short_load(tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger=__name__)
    app = create_app(load_tiny_pipeline(tiny_model_dir), ServerSettings(max_batch=8, max_queue=64, cache_images=256))
    with LiveServer(app) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:  # warm up
            for caption in CAPTIONS:
                assert http.post("/v1/generate", json={"caption": caption, "num_images": 2}).status_code == 200
        gc.collect()
        rss_before = rss_bytes()
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        started = time.perf_counter()
        deadline = time.monotonic() + TIME_LIMIT_S
        threads = [threading.Thread(target=_client, args=(server.url, i, deadline, latencies, errors, lock), daemon=True)
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIME_LIMIT_S + 30)
        elapsed = time.perf_counter() - started
        batches = app.state.attngan.batcher.batches_run
        gc.collect()
        rss_after = rss_bytes()
    images = sum(1 + (k % 2) for k in range(REQUESTS_PER_CLIENT)) * CLIENTS
    log.info("load: %d requests in %.2f s: %.1f req/s, %.1f images/s, %d batches; latency p50 %.0f ms, "
             "p95 %.0f ms, p99 %.0f ms; errors %d; RSS %s -> %s MiB", len(latencies), elapsed,
             len(latencies) / elapsed, images / elapsed, batches, 1000 * _percentile(latencies, 50),
             1000 * _percentile(latencies, 95), 1000 * _percentile(latencies, 99), len(errors),
             rss_before and rss_before >> 20, rss_after and rss_after >> 20)
    assert not errors, errors[:5]
    assert len(latencies) == CLIENTS * REQUESTS_PER_CLIENT, "the time limit cut the load test short"
    assert statistics.median(latencies) < 10
    if rss_before is not None and rss_after is not None:
        assert rss_after - rss_before < RSS_MARGIN, (rss_before, rss_after)
