"""The HTTP API and web pages: ``create_app(pipeline, settings) -> FastAPI``.

Routes: ``POST /v1/generate``, ``POST /v1/explain``, ``GET /v1/images/{id}.png``,
``GET /v1/model``, ``POST /api/v1.0/bird`` (the original demo's route), ``GET /healthz``,
``GET /readyz``, the pages ``/`` and ``/explain`` with their files under ``/static/``, and
FastAPI's ``/docs``. Everything the app needs lives in ``app.state.attngan``
(:class:`AppState`); nothing is global.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the request models of the
# routes (built per app, for its limits) from the live annotations.
import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, Response

from ..inference.pipeline import AttnGANPipeline
from ..text import UnknownWordsError, tokenize
from .auth import ApiKeyMiddleware, api_key_dependency
from .batching import Batcher, BatcherStoppedError, Job, QueueFullError
from .errors import ApiError, GuardMiddleware, error_response, install_error_handlers
from .inference import ImageResult, Task, TaskResult, run_batch
from .render import attention_strip, b64
from .resources import PngStore, StaticFile, StaticFiles, model_info
from .schemas import (
    BirdRequest,
    BirdResponse,
    ErrorResponse,
    ExplainBody,
    ExplainResponse,
    GenerateBody,
    GenerateResponse,
    Health,
    ModelInfo,
    request_models,
)

log = logging.getLogger(__name__)

IMAGE_ID = re.compile(r"[0-9a-f]{32}")
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DESCRIPTION = """\
Text-to-image generation with AttnGAN.

* `POST /v1/generate` returns every stage of every image as base64 PNG, with each word's
  attention map per refinement stage; send `Accept: image/png` to get the last stage of the
  first image as a PNG instead.
* `POST /api/v1.0/bird` is the original AttnGAN demo's route. Body `{"caption": "..."}`; reply
  (201) `{"caption", "images": [base64 PNG per stage], "seed", "tokens", "dropped", "model",
  "bird": {"small", "medium", "large", "map1", "map2", "caption", "elapsed"}}` where `bird` keeps
  the original reply's keys (base64 PNGs instead of storage URLs; `map1`/`map2` show each
  word's attention over the stage 2 / stage 3 image).
* Errors are `{"error": {"code", "message", "field"}}`.
"""
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def _error_responses(*statuses: int, keyed: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (401 too on a server with an API key)."""
    texts = {400: "Invalid JSON", 404: "No such image (ids are 32 hex digits; old images expire)",
             413: "Body too large", 422: "Invalid field, or no known word in the caption (code unknown_words)",
             503: "Queue full, or shutting down (see Retry-After)", 504: "Timed out"}
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorResponse, "description": texts[status]} for status in statuses}
    if 503 in responses:
        responses[503]["headers"] = _RETRY_AFTER
    if keyed:
        responses[401] = {"model": ErrorResponse, "description": "Missing or wrong API key",
                          "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}}
    return responses


@dataclass(frozen=True)
class ServerSettings:
    """Limits and options of one server (``attngan serve`` flags)."""

    max_batch: int = 8
    max_queue: int = 64
    batch_wait_ms: float = 10.0
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_images: int = 16
    request_timeout: float = 30.0
    max_body_bytes: int = 64 * 1024
    cache_images: int = 1024
    cache_bytes: int = 128 * 2**20


@dataclass
class AppState:
    """Everything the routes use: the model, the settings, the batcher and the image cache."""

    pipeline: AttnGANPipeline
    settings: ServerSettings
    batcher: Batcher
    cache: PngStore
    model: dict[str, Any]
    static: StaticFiles
    started_at: float = field(default_factory=time.time)


def create_app(pipeline: AttnGANPipeline, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``pipeline`` (an :class:`~attngan.inference.pipeline.AttnGANPipeline`)."""
    settings = settings or ServerSettings()
    batcher = Batcher(lambda jobs: run_batch(pipeline, jobs, settings.max_batch), settings.max_batch,
                      settings.max_queue, settings.batch_wait_ms)
    state = AppState(pipeline, settings, batcher, PngStore(settings.cache_images, settings.cache_bytes),
                     model_info(pipeline, settings.max_images), StaticFiles.load())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        log.info("serving model %s (%s)", state.model["name"], state.model["hash"])
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="AttnGAN", version=_version(), description=DESCRIPTION, lifespan=lifespan, debug=False)
    app.state.attngan = state
    install_error_handlers(app)
    auth = [Depends(api_key_dependency(settings.api_key))] if settings.api_key else []
    errors = _error_responses(400, 413, 422, 503, 504, keyed=bool(settings.api_key))
    generate_model, explain_model = request_models(settings.max_images, pipeline.num_stages)

    # ------------------------------------------------------------------ pages
    @app.get("/", include_in_schema=False)
    async def index_page() -> HTMLResponse:
        return _page(state.static.get("index.html"))

    @app.get("/explain", include_in_schema=False)
    async def explain_page() -> HTMLResponse:
        return _page(state.static.get("explain.html"))

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        item = state.static.get(name)
        return Response(item.data, media_type=item.media_type, headers={"Cache-Control": "no-cache"})

    # ------------------------------------------------------------------ health
    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, tags=["health"], summary="Model loaded and queue not full",
             responses={503: {"model": ErrorResponse, "description": "Not ready, or the queue is full"}})
    async def readyz() -> Any:
        if not batcher.running:
            return error_response(503, "not_ready", "the worker is not running")
        if batcher.is_full:
            return error_response(503, "queue_full", "the queue is full",
                                  headers={"Retry-After": str(batcher.retry_after())})
        return {"status": "ready", "detail": f"{batcher.waiting_images} images waiting"}

    @app.get("/v1/model", response_model=ModelInfo, tags=["model"], summary="The loaded model")
    async def model() -> dict[str, Any]:
        return state.model

    # ------------------------------------------------------------------ generation
    @app.post("/v1/generate", response_model=GenerateResponse, tags=["generate"], dependencies=auth,
              summary="Generate images for a caption",
              responses={**errors, 200: {"content": {"image/png": {}}, "description": "JSON, or a PNG on Accept: image/png"}})
    async def generate(body: generate_model, request: Request) -> Any:  # type: ignore[valid-type]  # FastAPI reads this run-time model
        body = cast(GenerateBody, body)  # a model built at run time: GenerateBody says what it holds
        started = time.perf_counter()
        png_only = _prefers_png(request.headers.get("accept"))
        seed = _seed(body.seed)
        task = Task(body.caption, [seed + j for j in range(body.num_images)], body.stages or pipeline.num_stages,
                    include_attention=body.include_attention and not png_only, truncation=body.truncation,
                    candidates=body.candidates)
        result, job = await _run(request, state, task)
        if png_only:
            first = result.images[0]
            image_id = state.cache.put(first.stage_pngs[-1])
            return Response(first.stage_pngs[-1], media_type="image/png",
                            headers={"X-Seed": str(first.seed), "X-Image-Id": image_id,
                                     "X-Truncation": f"{result.truncation:g}",
                                     "X-Candidates": str(result.candidates)})
        enc = result.encoded
        log.info("generated %d image(s) for a %d-word caption in %.0f ms", len(task.seeds), len(enc.tokens),
                 1000 * (time.perf_counter() - started))
        return {
            "caption": body.caption, "tokens": enc.tokens, "dropped": enc.dropped, "truncated": enc.truncated,
            "seed": seed, "model": _model_ref(state),
            "settings": {"num_images": body.num_images, "stages": task.stages, "include_attention": task.include_attention,
                         "device": state.model["device"], "precision": state.model["precision"],
                         "truncation": result.truncation, "candidates": result.candidates},
            "timing_ms": round(1000 * (time.perf_counter() - started), 2),
            "timing": {"queue_ms": round(1000 * job.queue_seconds, 2), "inference_ms": round(1000 * job.run_seconds, 2)},
            "images": [_image_json(state, image) for image in result.images],
        }

    @app.post("/v1/explain", response_model=ExplainResponse, tags=["explain"], dependencies=auth,
              summary="One image with the model's intermediate values, step by step", responses=errors)
    async def explain(body: explain_model, request: Request) -> dict[str, Any]:  # type: ignore[valid-type]  # as generate
        body = cast(ExplainBody, body)  # a model built at run time: ExplainBody says what it holds
        started = time.perf_counter()
        seed = _seed(body.seed)
        task = Task(body.caption, [seed], body.stages or pipeline.num_stages, include_attention=True, explain=True,
                    truncation=body.truncation, candidates=body.candidates)
        result, _ = await _run(request, state, task)
        image = _image_json(state, result.images[0])
        detail = result.explain or {}
        text = detail["text_encoder"]
        text["word_features_png"] = b64(text["word_features_png"])
        damsm = detail["damsm"]
        damsm["words"] = [{"word": w, "png_base64": b64(p)} for w, p in damsm.get("words", [])]
        return {"caption": body.caption, "dropped": result.encoded.dropped, "truncated": result.encoded.truncated,
                "seed": seed, "truncation": result.truncation, "candidates": result.candidates,
                "model": _model_ref(state), "text_encoder": text,
                "conditioning": detail["conditioning"],
                "stages": image["stages"], "attention": image["attention"], "damsm": damsm,
                "timing_ms": round(1000 * (time.perf_counter() - started), 2)}

    @app.post("/api/v1.0/bird", response_model=BirdResponse, status_code=201, tags=["compatibility"],
              dependencies=auth, summary="The original AttnGAN demo's route", responses=errors)
    async def bird(body: BirdRequest, request: Request) -> dict[str, Any]:
        started = time.perf_counter()
        seed = _seed(body.seed)
        result, _ = await _run(request, state, Task(body.caption, [seed], pipeline.num_stages))
        image = result.images[0]
        maps = await asyncio.to_thread(_attention_strips, image)
        pngs = [b64(p) for p in image.stage_pngs]
        legacy: dict[str, Any] = {name: (pngs[i] if i < len(pngs) else None)
                                  for i, name in enumerate(("small", "medium", "large"))}
        legacy.update({f"map{i + 1}": (maps[i] if i < len(maps) else None) for i in range(2)})
        legacy.update(caption=body.caption, elapsed=round(time.perf_counter() - started, 4))
        return {"caption": body.caption, "images": pngs, "seed": seed, "tokens": result.encoded.tokens,
                "dropped": result.encoded.dropped, "model": _model_ref(state), "bird": legacy}

    @app.get("/v1/images/{image_id}.png", tags=["generate"], dependencies=auth, summary="A generated image",
             response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "The PNG"},
                        **_error_responses(404, keyed=bool(settings.api_key)),
                        422: {"model": ErrorResponse, "description": "Invalid request"}})
    async def image(image_id: str) -> Response:
        data = state.cache.get(image_id) if IMAGE_ID.fullmatch(image_id) else None
        if data is None:
            raise ApiError(404, "not_found", "no such image (ids are 32 hex digits; old images expire)", "image_id")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    # the last added runs first: CORS, then the guard (size limit, headers), then the API key
    if settings.api_key:
        protected = [route for route in app.routes if auth[0] in getattr(route, "dependencies", ())]
        app.add_middleware(ApiKeyMiddleware, expected=settings.api_key, routes=protected)
    app.add_middleware(GuardMiddleware, max_body=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key", "Authorization"],
                           expose_headers=["Retry-After", "X-Seed", "X-Image-Id"], max_age=600)
    return app


# ---------------------------------------------------------------------------- helpers
def _version() -> str:
    from ..version import __version__

    return __version__


def _page(item: StaticFile) -> HTMLResponse:
    return HTMLResponse(item.data.decode("utf-8"), headers={"Content-Security-Policy": PAGE_CSP,
                                                            "Cache-Control": "no-cache"})


def _seed(seed: int | None) -> int:
    return seed if seed is not None else secrets.randbelow(2**31 - 1)


def _prefers_png(accept: str | None) -> bool:
    """True when the Accept header ranks ``image/png`` above JSON."""
    if not accept:
        return False
    quality: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = [p.strip().lower() for p in part.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        quality[media] = max(quality.get(media, 0.0), q)
    png = max(quality.get("image/png", 0.0), quality.get("image/*", 0.0))
    json_q = max(quality.get("application/json", 0.0), quality.get("application/*", 0.0))
    return png > 0 and png > json_q


def _model_ref(state: AppState) -> dict[str, str]:
    return {"name": state.model["name"], "hash": state.model["hash"]}


def _image_json(state: AppState, image: ImageResult) -> dict[str, Any]:
    stages = []
    for number, (png, size) in enumerate(zip(image.stage_pngs, image.stage_sizes), start=1):
        image_id = state.cache.put(png)
        stages.append({"stage": number, "size": size, "id": image_id, "url": f"/v1/images/{image_id}.png",
                       "png_base64": b64(png)})
    attention = [{"stage": a["stage"], "size": a["size"],
                  "words": [{"word": w, "png_base64": b64(p)} for w, p in a["words"]]} for a in image.attention]
    return {"id": stages[-1]["id"], "url": stages[-1]["url"], "seed": image.seed, "stages": stages,
            "attention": attention}


def _attention_strips(image: ImageResult) -> list[str]:
    strips = []
    for a in image.attention:
        index = min(a["stage"], len(image.stage_pngs)) - 1
        strips.append(b64(attention_strip(image.stage_pngs[index], [p for _, p in a["words"]])))
    return strips


def _check_words(pipeline: AttnGANPipeline, caption: str) -> None:
    tokens = tokenize(caption)
    ids, _ = pipeline.vocab.encode_tokens(tokens)
    if not ids:
        shown = ", ".join(tokens[:20]) if tokens else "the caption has no words"
        raise ApiError(422, "unknown_words", f"caption: no word is in the model's vocabulary ({shown})"[:300],
                       "caption", words=tokens[:100])


async def _wait_disconnect(request: Request) -> None:
    """Returns when the client goes away (the request body has been read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _run(request: Request, state: AppState, task: Task) -> tuple[TaskResult, Job]:
    """Queue ``task``, wait for its result, the client leaving, or the timeout."""
    _check_words(state.pipeline, task.caption)
    try:
        job = await state.batcher.submit(task.key, len(task.seeds), task)
    except QueueFullError as exc:
        raise ApiError(503, "queue_full", "the server is busy; retry later", None,
                       headers={"Retry-After": str(exc.retry_after)}) from None
    gone = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({job.future, gone}, timeout=state.settings.request_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not job.future.done():
            state.batcher.cancel(job)
    if job.future in done:
        try:
            return job.future.result(), job
        except UnknownWordsError as exc:
            raise ApiError(422, "unknown_words", str(exc)[:300], "caption") from None
        except BatcherStoppedError:
            raise ApiError(503, "unavailable", "the server is shutting down", headers={"Retry-After": "5"}) from None
    if gone in done:
        log.info("client left before its %d image(s) were ready; freed its place", len(task.seeds))
        raise ApiError(499, "client_closed_request", "the client closed the connection")
    raise ApiError(504, "timeout", f"no result within {state.settings.request_timeout:g} s", None)

