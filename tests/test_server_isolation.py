"""A failing job fails alone: the other jobs of its batch are served, with the right images.

The batcher is tested with plain functions, then with the real (tiny) pipeline, then over HTTP
with many clients at once. A fault in the joint forward pass is simulated by a pipeline
wrapper that raises whenever a chosen seed is in its call (standing in for, say, a non-finite
output or an out-of-memory error of one batch).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time

import pytest

pytest.importorskip("fastapi")

import httpx  # noqa: E402

from attngan.server import ServerSettings, create_app  # noqa: E402
from attngan.server.batching import Batcher  # noqa: E402
from attngan.server.inference import Task, run_batch  # noqa: E402
from attngan.server.render import images_to_png  # noqa: E402
from attngan.text import UnknownWordsError  # noqa: E402

from .test_server_support import LiveServer, SlowPipeline, load_tiny_pipeline  # noqa: E402

POISON_SEED = 666


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir):
    return load_tiny_pipeline(tiny_model_dir)


class FaultyPipeline:
    """Wraps a pipeline; a call whose seeds include ``POISON_SEED`` raises (records every call)."""

    def __init__(self, inner):
        self._inner = inner
        self.calls: list[list[int]] = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, captions, *args, seed=None, **kwargs):
        self.calls.append(list(seed))
        if POISON_SEED in seed:
            raise RuntimeError(f"non-finite output for seed {POISON_SEED}")
        return self._inner(captions, *args, seed=seed, **kwargs)


def _gather(jobs):
    async def wait():
        return await asyncio.gather(*(j.future for j in jobs), return_exceptions=True)

    return wait()


# ---------------------------------------------------------------------------- the Batcher alone
def test_a_failing_batch_is_run_again_one_job_at_a_time():
    calls: list[list[str]] = []

    def run(jobs):
        calls.append([j.payload for j in jobs])
        bad = [j.payload for j in jobs if j.payload.startswith("bad")]
        if bad:
            raise ValueError(f"cannot run {bad[0]}")
        return [f"done {j.payload}" for j in jobs]

    async def main():
        batcher = Batcher(run, max_batch=8, max_queue=100, batch_wait_ms=300)
        jobs = [await batcher.submit("k", 1, name) for name in ("a", "bad1", "b", "bad2", "c")]
        results = await _gather(jobs)
        after = await batcher.submit("k", 1, "d")
        results.append(await after.future)
        await batcher.stop()
        return batcher, results

    batcher, results = asyncio.run(main())
    assert calls == [["a", "bad1", "b", "bad2", "c"], ["a"], ["bad1"], ["b"], ["bad2"], ["c"], ["d"]]
    assert results[0] == "done a" and results[2] == "done b" and results[4] == "done c" and results[5] == "done d"
    assert isinstance(results[1], ValueError) and str(results[1]) == "cannot run bad1"
    assert isinstance(results[3], ValueError) and str(results[3]) == "cannot run bad2"
    assert batcher.batches_split == 1


def test_an_exception_in_place_of_a_result_fails_only_that_job_without_a_rerun():
    calls: list[list[str]] = []

    def run(jobs):
        calls.append([j.payload for j in jobs])
        return [ValueError(f"{j.payload} is bad") if j.payload.startswith("bad") else j.payload.upper() for j in jobs]

    async def main():
        batcher = Batcher(run, max_batch=8, max_queue=100, batch_wait_ms=300)
        jobs = [await batcher.submit("k", 1, name) for name in ("a", "bad", "b")]
        results = await _gather(jobs)
        await batcher.stop()
        return batcher, results

    batcher, results = asyncio.run(main())
    assert calls == [["a", "bad", "b"]] and batcher.batches_split == 0
    assert results[0] == "A" and results[2] == "B" and str(results[1]) == "bad is bad"


def test_a_job_cancelled_while_its_batch_fails_is_not_run_again():
    calls: list[list[str]] = []
    failing = threading.Event()
    release = threading.Event()

    def run(jobs):
        calls.append([j.payload for j in jobs])
        if len(jobs) > 1:
            failing.set()
            release.wait(5)
            raise RuntimeError("the batch is too large")
        return [j.payload for j in jobs]

    async def main():
        batcher = Batcher(run, max_batch=8, max_queue=100, batch_wait_ms=300)
        jobs = [await batcher.submit("k", 1, name) for name in ("a", "gone", "b")]
        while not failing.is_set():
            await asyncio.sleep(0.01)
        batcher.cancel(jobs[1])  # its client left while the batch ran
        release.set()
        results = await _gather([jobs[0], jobs[2]])
        await batcher.stop()
        return results

    assert asyncio.run(main()) == ["a", "b"]
    assert calls == [["a", "gone", "b"], ["a"], ["b"]]


# ---------------------------------------------------------------------------- the real pipeline
def _pngs_alone(pipeline, caption: str, seeds: list[int]) -> list[list[bytes]]:
    """[image][stage] PNGs of ``caption`` generated alone, one call per seed."""
    alone = []
    for seed in seeds:
        out = pipeline(caption, num_images=1, seed=seed)
        alone.append([images_to_png(stage)[0] for stage in out.images])
    return alone


def test_a_mixed_batch_serves_the_good_jobs_with_the_images_they_get_alone(pipeline):
    faulty = FaultyPipeline(pipeline)
    tasks = {
        "good1": Task("a small red circle on the left", [1], 3),
        "unknown": Task("zebra quokka", [2], 3),  # no known word: fails while it is prepared
        "good2": Task("a big blue square on the top", [40, 41], 3),
        "poison": Task("green triangle", [POISON_SEED], 3),  # fails the joint forward pass
        "good3": Task("yellow triangle of the image", [7], 3),
    }

    async def main():
        batcher = Batcher(lambda jobs: run_batch(faulty, jobs, 16), max_batch=16, max_queue=64, batch_wait_ms=500)
        jobs = [await batcher.submit(t.key, len(t.seeds), t) for t in tasks.values()]
        results = await _gather(jobs)
        await batcher.stop()
        return batcher, dict(zip(tasks, results))

    batcher, results = asyncio.run(main())
    # one batch of all five jobs; the unknown caption never reached the forward pass; the joint
    # forward failed and the four jobs left ran one at a time
    assert batcher.last_batch_jobs == 5 and batcher.batches_split == 1
    assert faulty.calls == [[1, 40, 41, POISON_SEED, 7], [1], [40, 41], [POISON_SEED], [7]]
    assert isinstance(results["unknown"], UnknownWordsError)
    assert "zebra quokka" in str(results["unknown"]) and "'zebra', 'quokka'" in str(results["unknown"])
    assert isinstance(results["poison"], RuntimeError) and str(POISON_SEED) in str(results["poison"])
    for name in ("good1", "good2", "good3"):
        task, result = tasks[name], results[name]
        assert [im.seed for im in result.images] == task.seeds
        assert [im.stage_pngs for im in result.images] == _pngs_alone(pipeline, task.caption, task.seeds), name
        assert result.encoded.text == task.caption


def test_a_job_that_fails_preparation_does_not_split_the_batch(pipeline):
    faulty = FaultyPipeline(pipeline)
    tasks = [Task("red circle", [3], 2), Task("quokka", [4], 2), Task("blue square", [5], 2)]

    async def main():
        batcher = Batcher(lambda jobs: run_batch(faulty, jobs, 16), max_batch=16, max_queue=64, batch_wait_ms=500)
        jobs = [await batcher.submit(t.key, 1, t) for t in tasks]
        results = await _gather(jobs)
        await batcher.stop()
        return batcher, results

    batcher, results = asyncio.run(main())
    assert faulty.calls == [[3, 5]] and batcher.batches_split == 0
    assert isinstance(results[1], UnknownWordsError)
    assert [im.stage_pngs for im in results[0].images] == [p[:2] for p in _pngs_alone(pipeline, "red circle", [3])]
    assert [im.stage_pngs for im in results[2].images] == [p[:2] for p in _pngs_alone(pipeline, "blue square", [5])]


# ---------------------------------------------------------------------------- over HTTP
def _post(url: str, route: str, body: object) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(url + route, content=content, headers={"Content-Type": "application/json"}, timeout=60)


def _check_images(pipeline, body: dict, response: httpx.Response) -> None:
    seeds = [body["seed"] + j for j in range(body.get("num_images", 1))]
    got = [[base64.b64decode(s["png_base64"]) for s in im["stages"]] for im in response.json()["images"]]
    assert got == _pngs_alone(pipeline, body["caption"], seeds), body


GOOD = [{"caption": c, "seed": 10 * i, "num_images": 1 + i % 2} for i, c in enumerate(
    ["a small red circle on the left", "a big blue square on the top", "green triangle center",
     "a tiny yellow circle on the bottom right", "red square of the image", "blue circle", "green square on the left",
     "yellow triangle on the right"])]
# (body, status, code, field): bodies refused whole, before any work is queued
BAD = [
    ({"caption": "zebra quokka", "seed": 1}, 422, "unknown_words", "caption"),
    ({"caption": "\U0001f426 !!", "seed": 2}, 422, "unknown_words", "caption"),
    ({"caption": "Platypus wombat numbat", "num_images": 2}, 422, "unknown_words", "caption"),
    ({"caption": 5}, 422, "wrong_type", "caption"),
    ({"caption": "red", "num_images": 0}, 422, "out_of_range", "num_images"),
    ({"caption": "red", "seed": -1}, 422, "out_of_range", "seed"),
    ({"caption": "red", "steps": 50}, 422, "unknown_field", "steps"),
    ({"caption": "red", "stages": 9}, 422, "out_of_range", "stages"),
    ({}, 422, "missing_field", "caption"),
    ('{"caption": "red', 400, "invalid_json", "body"),
    ("[1, 2]", 422, "wrong_type", "body"),
]


def test_many_clients_mixing_good_and_bad_bodies(pipeline):
    app = create_app(pipeline, ServerSettings(max_batch=16, max_queue=128, batch_wait_ms=100, max_images=4))
    requests = [("good", body, None) for body in GOOD] + [("bad", body, expected) for body, *expected in BAD]
    requests = requests + [(kind, body, expected) for kind, body, expected in requests[::2]]  # some twice
    responses: list[httpx.Response | BaseException | None] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def client(index: int) -> None:
        barrier.wait(10)
        try:
            responses[index] = _post(server.url, "/v1/generate", requests[index][1])
        except BaseException as exc:  # noqa: BLE001 - reported below
            responses[index] = exc

    with LiveServer(app) as server:
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        batches = app.state.attngan.batcher.batches_run
    goods = 0
    for (kind, body, expected), response in zip(requests, responses):
        assert isinstance(response, httpx.Response), (body, response)
        assert response.status_code < 500, (body, response.status_code, response.text[:300])
        if kind == "good":
            goods += 1
            assert response.status_code == 200, (body, response.text[:300])
            _check_images(pipeline, body, response)
            continue
        status, code, field = expected
        error = response.json()["error"]
        assert (response.status_code, error["code"], error["field"]) == (status, code, field), (body, response.text)
        assert error["message"] and "Traceback" not in response.text
        if code == "unknown_words":
            assert error["words"] == [w.lower() for w in body["caption"].split() if w.isalpha()], error
            assert all(w in error["message"] for w in error["words"]), error
    assert batches < goods  # good requests shared batches


def test_over_http_a_fault_in_one_request_fails_only_that_request(pipeline, caplog):
    gate = threading.Event()
    faulty = FaultyPipeline(SlowPipeline(pipeline, gate))
    app = create_app(faulty, ServerSettings(max_batch=16, batch_wait_ms=200))
    batcher = app.state.attngan.batcher
    bodies = [{"caption": "red circle", "seed": 5}, {"caption": "blue square on the top", "seed": 8, "num_images": 2},
              {"caption": "green triangle", "seed": POISON_SEED}, {"caption": "yellow circle", "seed": 20}]
    responses: dict[int, httpx.Response] = {}

    def client(index: int) -> None:
        responses[index] = _post(server.url, "/v1/generate", bodies[index])

    with LiveServer(app) as server:
        first = threading.Thread(target=client, args=(0,), daemon=True)
        first.start()
        deadline = time.monotonic() + 10
        while not faulty.calls and time.monotonic() < deadline:  # the first request holds the worker
            time.sleep(0.01)
        rest = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(1, len(bodies))]
        for t in rest:
            t.start()
        while batcher.waiting_images < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        for t in [first, *rest]:
            t.join(30)
    assert faulty.calls[0] == [5] and sorted(faulty.calls[1]) == [8, 9, 20, POISON_SEED]  # one batch of three
    assert sorted(faulty.calls[2:]) == [[8, 9], [20], [POISON_SEED]]  # then one request at a time
    for index, body in enumerate(bodies):
        response = responses[index]
        if body["seed"] == POISON_SEED:
            assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
            assert "non-finite" not in response.text  # the detail stays in the server's log
        else:
            assert response.status_code == 200, response.text[:300]
            _check_images(pipeline, body, response)
    assert "non-finite output" in caplog.text
