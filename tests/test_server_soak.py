"""A soak: a few hundred mixed requests against a real server, memory measured after warm-up.

The server runs in this process (uvicorn in a thread), so two measurements see it whole:

* ``tracemalloc`` counts the Python allocations still alive: exact, but blind to tensors and
  other native memory. Its growth over the soak is bounded as a whole.
* The resident set size (RSS) counts everything, read after garbage collection and after
  free heap pages go back to the system (glibc ``malloc_trim``). It also grows in ways that
  are no leak: native caches (kernels for each new batch shape) filling over the first few
  hundred requests, and steps of a few MiB now and then (a thread's malloc arena, a heap
  that fragments). So it is read after every window of ``WINDOW`` requests, and the growth
  is estimated as the second smallest growth of a window times the number of windows: a leak
  adds the same to every window, so even the quietest ones show it, while warm-up and steps
  add to some windows only (and the second smallest, not the smallest, so that one window
  where the allocator handed pages back cannot hide a leak).

Both start once the image cache is full and every code path has run. The bounds are set so
that a leak of ``LEAK_BYTES`` per request (100 KiB) overshoots each several times over, and
the last two tests show that the same measurement flags such a leak, injected on purpose, in
Python objects and in tensors. What is simulated: the leaks (a hook that keeps 100 KiB per
request); everything else is the real server and model (the tiny random one).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import mmap
import threading
import tracemalloc
from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("fastapi")

import httpx  # noqa: E402

from attngan.server import ServerSettings, create_app  # noqa: E402
from attngan.server import errors as server_errors  # noqa: E402

from .test_server_support import LiveServer, load_tiny_pipeline, rss_bytes  # noqa: E402

log = logging.getLogger(__name__)
pytestmark = pytest.mark.slow

CLIENTS = 4
WARMUP_REQUESTS = 60
SOAK_REQUESTS = 300
WINDOW = 50
LEAK_BYTES = 100 * 1024
# allowed growth over SOAK_REQUESTS requests: a 100 KiB/request leak (30 MiB) is 10x / 4x this
# (RSS: 5 MiB a window against 1.25 MiB)
PYTHON_BOUND = LEAK_BYTES * SOAK_REQUESTS // 10
RSS_BOUND = LEAK_BYTES * SOAK_REQUESTS // 4
CAPTIONS = ["a small red circle on the left", "a big blue square on the top", "green triangle center",
            "a tiny yellow circle on the bottom right", "red square of the image"]


@dataclass(frozen=True)
class Growth:
    """Memory gained over a soak, in bytes (``rss`` is None where the system does not say).

    ``python``: live Python allocations, end minus start. ``rss``: the second smallest
    growth of a window times the number of windows. ``rss_windows``: the growth of each window.
    """

    python: int
    rss: int | None
    rss_windows: tuple[int, ...]
    requests: int


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir):
    return load_tiny_pipeline(tiny_model_dir)


def _settle() -> None:
    """Collect garbage and hand free heap pages back, so RSS shows memory still in use."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)
        if trim is not None:
            trim(0)


def _request(http: httpx.Client, k: int, ids: list[str]) -> None:
    """Request ``k`` of a fixed mix of every route, good and bad; asserts the expected status."""
    caption, kind = CAPTIONS[k % len(CAPTIONS)], k % 6
    if kind == 0:
        r = http.post("/v1/generate", json={"caption": caption, "seed": k, "num_images": 1 + k % 2})
        expected: tuple[int, ...] = (200,)
    elif kind == 1:
        r = http.post("/v1/generate", json={"caption": caption, "seed": k}, headers={"Accept": "image/png"})
        expected = (200,)
        ids.append(r.headers.get("x-image-id", ""))
    elif kind == 2:
        r, expected = http.post("/v1/explain", json={"caption": caption, "seed": k}), (200,)
    elif kind == 3:
        r, expected = http.post("/api/v1.0/bird", json={"caption": caption, "seed": k}), (201,)
    elif kind == 4:
        bad = [{"caption": "zebra quokka"}, {"caption": caption, "num_images": 0}, "{bad json"][k % 3]
        content = bad if isinstance(bad, str) else None
        r = http.post("/v1/generate", json=None if content else bad, content=content,
                      headers={"Content-Type": "application/json"})
        expected = (400, 422)
    else:
        r, expected = http.get(f"/v1/images/{ids[-1] if ids else 'none'}.png"), (200, 404)  # 404 once evicted
    assert r.status_code in expected, (k, r.status_code, r.text[:200])


def _load(url: str, first: int, count: int) -> None:
    """``count`` requests numbered from ``first``, spread over ``CLIENTS`` concurrent clients."""
    failures: list[BaseException] = []

    def client(index: int) -> None:
        ids: list[str] = []
        try:
            with httpx.Client(base_url=url, timeout=60) as http:
                for k in range(first + index, first + count, CLIENTS):
                    _request(http, k, ids)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if failures:
        raise failures[0]


def soak(app: Any, requests: int = SOAK_REQUESTS, warmup: int = WARMUP_REQUESTS) -> Growth:
    """Warm ``app`` up, then measure what ``requests`` more requests (in windows of ``WINDOW``) leave."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start(1)
    try:
        with LiveServer(app) as server:
            _load(server.url, 0, warmup)
            _settle()
            python_before, rss = tracemalloc.get_traced_memory()[0], [rss_bytes()]
            for first in range(warmup, warmup + requests, WINDOW):
                _load(server.url, first, min(WINDOW, warmup + requests - first))
                _settle()
                rss.append(rss_bytes())
            python_after = tracemalloc.get_traced_memory()[0]
    finally:
        if not tracing:
            tracemalloc.stop()
    windows: tuple[int, ...] = ()
    estimate = None
    if None not in rss:
        windows = tuple(b - a for a, b in zip(rss, rss[1:]))  # type: ignore[operator]
        estimate = sorted(windows)[1] * len(windows)
    growth = Growth(python_after - python_before, estimate, windows, requests)
    log.info("soak: %d requests: Python allocations %+.0f KiB; RSS %s KiB, by window %s KiB", requests,
             growth.python / 1024, "n/a" if estimate is None else f"{estimate / 1024:+.0f}",
             [round(w / 1024) for w in windows])
    return growth


def _app(pipeline) -> Any:
    # a small image cache fills up during the warm-up; after that it must not grow
    return create_app(pipeline, ServerSettings(max_batch=8, batch_wait_ms=2, cache_images=24))


@pytest.fixture
def quiet_server_logs():
    """No per-request log records kept by the test run's log capture (they would count as growth)."""
    logger = logging.getLogger("attngan")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def test_the_bounds_would_catch_a_100_kib_leak():
    leaked = LEAK_BYTES * SOAK_REQUESTS
    assert leaked >= 10 * PYTHON_BOUND and leaked >= 3 * RSS_BOUND


def test_soak_memory_stays_flat(pipeline, caplog, quiet_server_logs):
    caplog.set_level(logging.INFO, logger=__name__)
    app = _app(pipeline)
    growth = soak(app)
    assert len(app.state.attngan.cache) <= 24  # the image cache stayed within its bound
    assert growth.python < PYTHON_BOUND, growth
    if growth.rss is not None:
        assert growth.rss < RSS_BOUND, growth


class _Leak:
    """Keeps ``LEAK_BYTES`` per HTTP request, made by ``make``, for as long as it lives."""

    def __init__(self, make) -> None:
        self.make = make
        self.kept: list[Any] = []
        self.original = server_errors.GuardMiddleware.__call__

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original, kept, make = self.original, self.kept, self.make

        async def leaky(middleware, scope, receive, send):
            if scope["type"] == "http":
                kept.append(make())
            await original(middleware, scope, receive, send)

        monkeypatch.setattr(server_errors.GuardMiddleware, "__call__", leaky)


def test_soak_flags_a_leak_of_python_objects(pipeline, monkeypatch, quiet_server_logs):
    leak = _Leak(lambda: bytearray(LEAK_BYTES))
    leak.install(monkeypatch)
    growth = soak(_app(pipeline))
    assert len(leak.kept) >= WARMUP_REQUESTS + SOAK_REQUESTS
    assert growth.python > PYTHON_BOUND, growth  # tracemalloc sees it ...
    if growth.rss is not None:
        assert growth.rss > RSS_BOUND, growth  # ... and so does RSS


def test_soak_flags_a_leak_of_tensors(pipeline, monkeypatch, quiet_server_logs):
    import torch

    def tensor_on_new_pages() -> torch.Tensor:
        # native memory, outside tracemalloc's view, on pages of its own: a malloc'd tensor could
        # reuse heap pages that an earlier test freed (resident already), which no RSS reading sees
        block = mmap.mmap(-1, LEAK_BYTES)
        block.write(b"\x01" * LEAK_BYTES)  # every page touched: resident
        return torch.frombuffer(block, dtype=torch.float32)  # keeps the block alive

    leak = _Leak(tensor_on_new_pages)
    leak.install(monkeypatch)
    growth = soak(_app(pipeline))
    if growth.rss is None:
        pytest.skip("this system does not report the resident set size")
    assert growth.python < PYTHON_BOUND, growth
    assert growth.rss > RSS_BOUND, growth
