"""``attngan serve``: the HTTP API and web pages (FastAPI + uvicorn)."""

from __future__ import annotations

import ipaddress
import logging

import click

from .flags import message
from .group import candidates_option, main, model_options, truncation_option

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.command("serve")
@model_options("model_path")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; use 0.0.0.0 only behind a firewall or with --api-key.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu, cuda, cuda:1.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 where the hardware has native bf16 arithmetic, else fp32.")
@click.option("--exact", is_flag=True, help="Run the reference modules instead of the fused fast generator.")
@truncation_option
@candidates_option
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Most images run together in one batch.")
@click.option("--max-queue", default=64, show_default=True, type=click.IntRange(1, 100_000),
              help="Most images waiting; beyond it requests get 503 with Retry-After.")
@click.option("--batch-wait-ms", default=10.0, show_default=True, type=click.FloatRange(0, 10_000),
              help="How long a batch waits for more requests.")
@click.option("--api-key", envvar="ATTNGAN_API_KEY", default=None,
              help="Require this key (X-API-Key or Authorization: Bearer) on generation routes "
                   "[env ATTNGAN_API_KEY].")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Allow browser calls from this origin (repeatable); CORS is off without it.")
@click.option("--max-images", default=16, show_default=True, type=click.IntRange(1, 1024),
              help="Most images per request.")
@click.option("--request-timeout", default=30.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds before a request is answered 504.")
def serve(model_path: str | None, revision: str | None, host: str, port: int, device: str, precision: str,
          exact: bool, truncation: float | None, candidates: int | None, max_batch: int, max_queue: int,
          batch_wait_ms: float, api_key: str | None, cors_origins: tuple[str, ...], max_images: int,
          request_timeout: float) -> None:
    """Serve the HTTP API (/v1/generate, /docs) and the web pages (/, /explain).

    --truncation and --candidates are the defaults of requests that send no "truncation" or
    "candidates" field."""
    try:
        import uvicorn

        from ..server import ServerSettings, create_app
    except ImportError as exc:
        raise click.ClickException(f"{exc.name} is missing: install the serve extra (pip install 'attngan[serve]')") \
            from None
    from ..inference.pipeline import AttnGANPipeline

    try:
        pipeline = AttnGANPipeline.from_pretrained(model_path, device=device, precision=precision, exact=exact,
                                                   revision=revision, truncation=truncation,
                                                   candidates=candidates)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(f"cannot load the model: {message(exc)}") from None
    settings = ServerSettings(max_batch=max_batch, max_queue=max_queue, batch_wait_ms=batch_wait_ms,
                              api_key=api_key or None, cors_origins=tuple(cors_origins), max_images=max_images,
                              request_timeout=request_timeout)
    if not _is_loopback(host) and not api_key:
        log.warning("listening on %s without an API key: anyone who can reach it can generate", host)
    app = create_app(pipeline, settings)
    click.echo(f"attngan: serving {pipeline.name} on http://{host}:{port} (API docs at /docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False)
