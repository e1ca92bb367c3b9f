"""Batching: requests combined into one pipeline call, bounded queue, timeouts, clients that leave."""

from __future__ import annotations

import asyncio
import base64
import threading
import time

import pytest

pytest.importorskip("fastapi")

import httpx  # noqa: E402

from attngan.server import ServerSettings, create_app  # noqa: E402
from attngan.server.batching import Batcher, QueueFullError  # noqa: E402
from attngan.server.render import images_to_png  # noqa: E402

from .test_server_support import LiveServer, SlowPipeline, load_tiny_pipeline, make_test_client  # noqa: E402


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir):
    return load_tiny_pipeline(tiny_model_dir)


# ---------------------------------------------------------------------------- the Batcher alone
def _sizes_runner(log: list[list[tuple[str, int]]], delay: float = 0.0):
    def run(jobs):
        log.append([(job.payload, job.size) for job in jobs])
        time.sleep(delay)
        return [f"done {job.payload}" for job in jobs]

    return run


def test_batcher_combines_jobs_of_one_key_up_to_max_batch():
    batches: list[list[tuple[str, int]]] = []

    async def main():
        batcher = Batcher(_sizes_runner(batches), max_batch=4, max_queue=100, batch_wait_ms=50)
        await batcher.start()
        jobs = [await batcher.submit("a", 2, "a1"), await batcher.submit("b", 1, "b1"),
                await batcher.submit("a", 1, "a2"), await batcher.submit("a", 2, "a3"),
                await batcher.submit("a", 6, "big")]
        results = await asyncio.gather(*(j.future for j in jobs))
        await batcher.stop()
        return results

    results = asyncio.run(main())
    assert results == ["done a1", "done b1", "done a2", "done a3", "done big"]
    assert batches[0] == [("a1", 2), ("a2", 1)]  # same key, up to 4 images, in order
    assert [("b1", 1)] in batches and [("a3", 2)] in batches and [("big", 6)] in batches  # a big job runs alone


def test_batcher_queue_limit_cancel_and_failures():
    batches: list[list[tuple[str, int]]] = []
    release = threading.Event()

    def run(jobs):
        batches.append([j.payload for j in jobs])
        if jobs[0].payload == "boom":
            raise ValueError("bad batch")
        release.wait(5)
        return [j.payload for j in jobs]

    async def main():
        batcher = Batcher(run, max_batch=1, max_queue=3, batch_wait_ms=0)
        running = await batcher.submit("k", 1, "running")
        while not batches:
            await asyncio.sleep(0.01)
        waiting = [await batcher.submit("k", 1, f"w{i}") for i in range(3)]
        assert batcher.waiting_images == 3 and batcher.is_full
        with pytest.raises(QueueFullError) as info:
            await batcher.submit("k", 1, "overflow")
        assert info.value.retry_after >= 1
        batcher.cancel(waiting[1])  # a client left: its place is free again
        assert batcher.waiting_images == 2
        late = await batcher.submit("k", 1, "late")
        release.set()
        done = await asyncio.gather(running.future, waiting[0].future, waiting[2].future, late.future)
        boom = await batcher.submit("k", 1, "boom")
        with pytest.raises(ValueError, match="bad batch"):
            await boom.future
        after = await batcher.submit("k", 1, "after")  # the worker survived the failure
        assert await after.future == "after"
        await batcher.stop()
        return done

    assert asyncio.run(main()) == ["running", "w0", "w2", "late"]
    assert ["w1"] not in batches


# ---------------------------------------------------------------------------- through HTTP
def _post_in_thread(url: str, body: dict, results: dict, name: str, timeout: float = 20.0) -> threading.Thread:
    def run():
        try:
            results[name] = httpx.post(url + "/v1/generate", json=body, timeout=timeout)
        except httpx.HTTPError as exc:
            results[name] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_concurrent_requests_share_one_batch_and_match_the_pipeline(pipeline):
    gate = threading.Event()
    slow = SlowPipeline(pipeline, gate)
    app = create_app(slow, ServerSettings(max_batch=8, batch_wait_ms=200))
    bodies = {"first": {"caption": "red circle", "seed": 1},
              "b": {"caption": "a small blue square on the top", "num_images": 2, "seed": 40},
              "c": {"caption": "green triangle zebra", "num_images": 3, "seed": 7}}
    results: dict = {}
    with LiveServer(app) as server:
        threads = [_post_in_thread(server.url, bodies["first"], results, "first")]
        _wait_for(slow.started.is_set)
        threads += [_post_in_thread(server.url, bodies[k], results, k) for k in ("b", "c")]
        _wait_for(lambda: app.state.attngan.batcher.waiting_images == 5)
        gate.set()
        for t in threads:
            t.join(20)
    assert [len(call) for call in slow.calls] == [1, 5]  # b and c ran together
    for name, body in bodies.items():
        response = results[name]
        assert response.status_code == 200, response
        direct = pipeline(body["caption"], num_images=body.get("num_images", 1), seed=body["seed"])
        for stage, expected in enumerate(direct.images):
            got = [base64.b64decode(im["stages"][stage]["png_base64"]) for im in response.json()["images"]]
            assert got == images_to_png(expected), (name, stage)


def test_queue_overflow_is_503_with_retry_after(pipeline):
    gate = threading.Event()
    slow = SlowPipeline(pipeline, gate)
    app = create_app(slow, ServerSettings(max_batch=1, max_queue=2, batch_wait_ms=0))
    results: dict = {}
    with LiveServer(app) as server:
        threads = [_post_in_thread(server.url, {"caption": "red"}, results, "running")]
        _wait_for(slow.started.is_set)
        threads.append(_post_in_thread(server.url, {"caption": "blue", "num_images": 2}, results, "waiting"))
        _wait_for(lambda: app.state.attngan.batcher.waiting_images == 2)
        overflow = httpx.post(server.url + "/v1/generate", json={"caption": "green"}, timeout=10)
        ready = httpx.get(server.url + "/readyz", timeout=10)
        health = httpx.get(server.url + "/healthz", timeout=10)
        gate.set()
        for t in threads:
            t.join(20)
        ready_after = httpx.get(server.url + "/readyz", timeout=10)
    assert overflow.status_code == 503 and int(overflow.headers["retry-after"]) >= 1
    assert overflow.json()["error"]["code"] == "queue_full"
    assert ready.status_code == 503 and "retry-after" in ready.headers and health.status_code == 200
    assert results["running"].status_code == 200 and results["waiting"].status_code == 200
    assert ready_after.status_code == 200


def test_a_client_that_leaves_frees_its_place(pipeline):
    gate = threading.Event()
    slow = SlowPipeline(pipeline, gate)
    app = create_app(slow, ServerSettings(max_batch=1, max_queue=1, batch_wait_ms=0))
    batcher = app.state.attngan.batcher
    results: dict = {}
    with LiveServer(app) as server:
        threads = [_post_in_thread(server.url, {"caption": "red circle"}, results, "running")]
        _wait_for(slow.started.is_set)
        # this client gives up after 0.5 s and closes its connection
        threads.append(_post_in_thread(server.url, {"caption": "blue square"}, results, "leaves", timeout=0.5))
        _wait_for(lambda: batcher.waiting_images == 1)
        assert httpx.post(server.url + "/v1/generate", json={"caption": "green"}, timeout=10).status_code == 503
        threads[-1].join(10)
        assert isinstance(results["leaves"], httpx.TimeoutException)
        _wait_for(lambda: batcher.waiting_images == 0)  # the server noticed and freed the place
        threads.append(_post_in_thread(server.url, {"caption": "yellow triangle"}, results, "next"))
        _wait_for(lambda: batcher.waiting_images == 1)
        gate.set()
        for t in threads:
            t.join(20)
    assert results["running"].status_code == 200 and results["next"].status_code == 200
    ran = [caption for call in slow.calls for caption in call]
    assert "blue square" not in ran and ran == ["red circle", "yellow triangle"]


def test_request_timeout_is_504_json(pipeline):
    gate = threading.Event()
    slow = SlowPipeline(pipeline, gate, max_wait=3)
    app = create_app(slow, ServerSettings(request_timeout=0.3, batch_wait_ms=0))
    with make_test_client(app) as client:
        response = client.post("/v1/generate", json={"caption": "red circle"})
        gate.set()
        assert client.post("/v1/generate", json={"caption": "red circle"}).status_code == 200
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout" and "Traceback" not in response.text
