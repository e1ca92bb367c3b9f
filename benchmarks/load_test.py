"""Load test of ``attngan serve`` on the loopback interface.

Starts ``attngan serve`` in a subprocess on 127.0.0.1 (a free port), warms it up, then runs
``--clients`` concurrent clients until ``--requests`` requests are done or ``--duration``
seconds have passed, and prints latency percentiles (p50/p95/p99), throughput (requests/s
and images/s), errors by kind and the server's resident memory before and after.

    .venv/bin/python benchmarks/load_test.py --tiny --clients 16 --requests 400 --duration 60

``--tiny`` serves a small random model (no download, CPU friendly); ``--model DIR`` serves a
model folder; neither serves the bundled model. ``--url http://127.0.0.1:PORT`` measures a
server that is already running (loopback addresses only; memory is then not reported).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

CAPTIONS = [
    "a small red circle on the left", "a big blue square on the top", "green triangle in the center",
    "a tiny yellow circle on the bottom right", "this bird is red with white wings and a short beak",
    "a large green square of the image", "a blue triangle on the right",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def make_tiny_model(folder: Path) -> Path:
    """A small randomly initialised model (16 -> 32 -> 64 px): for measuring the server, not the images."""
    import torch

    from attngan.config import GeneratorConfig, ModelConfig, TextEncoderConfig
    from attngan.hub import build_bundle, save_pretrained
    from attngan.text import PAD_TOKEN, Vocabulary, tokenize

    torch.manual_seed(0)
    words = dict.fromkeys(t for c in CAPTIONS for t in tokenize(c))
    vocab = Vocabulary([PAD_TOKEN, *words])
    config = ModelConfig(
        text_encoder=TextEncoderConfig(vocab_size=len(vocab), word_embedding_dim=32, hidden_dim=32, max_words=18),
        generator=GeneratorConfig(text_dim=32, condition_dim=16, noise_dim=16, channels=16, num_residual=1,
                                  num_stages=3, first_stage_size=16),
        image_encoder=None, name="tiny-load-test")
    return save_pretrained(build_bundle(config, vocab), folder / "tiny")


def wait_ready(url: str, process: subprocess.Popen[bytes] | None, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server at {url} did not become ready in {seconds:.0f} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_load(url: str, clients: int, total: int, duration: float, num_images: int,
             api_key: str | None) -> dict[str, object]:
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    images = 0
    lock = threading.Lock()
    counter = iter(range(total))
    deadline = time.monotonic() + duration
    headers = {"X-API-Key": api_key} if api_key else {}

    def client(index: int) -> None:
        nonlocal images
        with httpx.Client(base_url=url, timeout=60, headers=headers) as http:
            while time.monotonic() < deadline:
                with lock:
                    k = next(counter, None)
                if k is None:
                    return
                body = {"caption": CAPTIONS[k % len(CAPTIONS)], "num_images": num_images, "seed": k,
                        "include_attention": k % 2 == 0}
                started = time.perf_counter()
                try:
                    response = http.post("/v1/generate", json=body)
                    problem = None if response.status_code == 200 else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    problem = type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if problem:
                        errors[problem] += 1
                    else:
                        images += num_images

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 120)
    wall = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": round(wall, 2), "errors": dict(errors),
            "requests_per_s": round(len(latencies) / wall, 2), "images_per_s": round(images / wall, 2),
            "p50_ms": round(1000 * percentile(latencies, 50), 1) if latencies else None,
            "p95_ms": round(1000 * percentile(latencies, 95), 1) if latencies else None,
            "p99_ms": round(1000 * percentile(latencies, 99), 1) if latencies else None,
            "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tiny", action="store_true", help="serve a small random model")
    source.add_argument("--model", help="serve this model folder")
    source.add_argument("--url", help="measure a running server on 127.0.0.1/localhost instead")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400, help="total requests (upper bound)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (upper bound)")
    parser.add_argument("--num-images", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-queue", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--api-key", default=os.environ.get("ATTNGAN_API_KEY"))
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 256 and 1 <= args.requests <= 100_000 and 0 < args.duration <= 3600):
        parser.error("--clients 1..256, --requests 1..100000, --duration up to 3600 s")

    process = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.url:
            if urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
                parser.error("--url must point at a loopback address")
            url = args.url.rstrip("/")
        else:
            model = str(make_tiny_model(Path(tmp))) if args.tiny else args.model
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            command = [sys.executable, "-c", "from attngan.cli import main; main()", "serve", "--model", model,
                       "--host", "127.0.0.1", "--port", str(port), "--device", args.device,
                       "--max-batch", str(args.max_batch), "--max-queue", str(args.max_queue),
                       "--request-timeout", "120"]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(url, process)
            warm = run_load(url, min(args.clients, 4), args.warmup, 60, args.num_images, args.api_key)
            if warm["errors"]:
                raise SystemExit(f"warm-up failed: {warm['errors']}")
            rss_before = rss_mib(process.pid) if process else None
            report = run_load(url, args.clients, args.requests, args.duration, args.num_images, args.api_key)
            rss_after = rss_mib(process.pid) if process else None
        finally:
            if process is not None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
    report.update(clients=args.clients, num_images=args.num_images, max_batch=args.max_batch,
                  rss_before_mib=rss_before and round(rss_before, 1), rss_after_mib=rss_after and round(rss_after, 1))
    print(f"requests {report['requests']} in {report['seconds']} s with {args.clients} clients")
    print(f"latency p50 {report['p50_ms']} ms  p95 {report['p95_ms']} ms  p99 {report['p99_ms']} ms")
    print(f"throughput {report['requests_per_s']} requests/s, {report['images_per_s']} images/s")
    print(f"errors {sum(report['errors'].values())} {report['errors'] or ''}")  # type: ignore[union-attr]
    print(f"server RSS {report['rss_before_mib']} MiB before, {report['rss_after_mib']} MiB after")
    print(json.dumps(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
