"""Helpers for the server tests: a real uvicorn server in a thread, a slow pipeline, PNG checks."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_tiny_pipeline(model_dir: Path) -> Any:
    from attngan.inference.pipeline import AttnGANPipeline

    return AttnGANPipeline.from_pretrained(model_dir)


class LiveServer:
    """``with LiveServer(app) as server:`` serves ``app`` with uvicorn on 127.0.0.1 (a free port)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


class SlowPipeline:
    """Wraps a pipeline; each call waits for ``gate`` (a threading.Event) and records its captions."""

    def __init__(self, inner: Any, gate: threading.Event, max_wait: float = 10.0) -> None:
        self._inner = inner
        self.gate = gate
        self.max_wait = max_wait
        self.calls: list[list[str]] = []
        self.started = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __call__(self, captions: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(list(captions) if not isinstance(captions, str) else [captions])
        self.started.set()
        self.gate.wait(self.max_wait)
        return self._inner(captions, *args, **kwargs)


def rss_bytes() -> int | None:
    """Resident memory of this process (Linux), or None."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def make_test_client(app: Any) -> Any:
    """FastAPI's TestClient (500s answered, not raised); use it as a context manager."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2")  # newer starlette prefers httpx2
        from fastapi.testclient import TestClient

    return TestClient(app, raise_server_exceptions=False)
