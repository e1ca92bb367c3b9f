"""``attngan serve``: flags reach the app and uvicorn; loopback by default."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from click.testing import CliRunner  # noqa: E402

from attngan.cli import main  # noqa: E402


@pytest.fixture
def captured(monkeypatch):
    calls: list[tuple] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    return calls


def test_serve_defaults_bind_loopback(tiny_model_dir, captured, monkeypatch):
    monkeypatch.delenv("ATTNGAN_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["serve", "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    app, kwargs = captured[0]
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8000
    state = app.state.attngan
    assert state.settings.api_key is None and state.settings.cors_origins == ()
    assert (state.settings.max_batch, state.settings.max_queue, state.settings.max_images) == (8, 64, 16)
    assert state.model["name"] == "tiny-test"


def test_serve_flags_and_api_key_from_the_environment(tiny_model_dir, captured, monkeypatch):
    monkeypatch.setenv("ATTNGAN_API_KEY", "from-env")
    args = ["serve", "--model", str(tiny_model_dir), "--host", "0.0.0.0", "--port", "9001", "--max-batch", "4",
            "--max-queue", "10", "--batch-wait-ms", "5", "--cors-origin", "http://a.test", "--cors-origin",
            "http://b.test", "--max-images", "3", "--request-timeout", "7"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    app, kwargs = captured[0]
    settings = app.state.attngan.settings
    assert kwargs["host"] == "0.0.0.0" and kwargs["port"] == 9001
    assert settings.api_key == "from-env" and settings.cors_origins == ("http://a.test", "http://b.test")
    assert (settings.max_batch, settings.max_queue, settings.batch_wait_ms) == (4, 10, 5)
    assert (settings.max_images, settings.request_timeout) == (3, 7)


def test_serve_reports_a_bad_model_folder(tmp_path, captured):
    result = CliRunner().invoke(main, ["serve", "--model", str(tmp_path)])
    assert result.exit_code != 0 and "cannot load the model" in result.output and not captured
