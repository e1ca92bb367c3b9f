"""Every error as JSON ``{"error": {"code", "message", "field"}}``, and the ASGI guards.

No response ever carries a traceback: unexpected exceptions are logged here, server-side,
and answered with a generic 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 406: "not_acceptable", 413: "body_too_large",
                 415: "unsupported_media_type", 422: "invalid_value", 429: "too_many_requests",
                 500: "internal_error", 503: "unavailable", 504: "timeout"}
_PYDANTIC_CODES = {"missing": "missing_field", "extra_forbidden": "unknown_field", "json_invalid": "invalid_json",
                   "string_too_short": "too_short", "string_too_long": "too_long",
                   "greater_than_equal": "out_of_range", "less_than_equal": "out_of_range",
                   "greater_than": "out_of_range", "less_than": "out_of_range"}


class ApiError(Exception):
    """An error answered as JSON with ``status``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, words: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers, self.words = headers or {}, words


def error_body(code: str, message: str, field: str | None = None, words: list[str] | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"code": code, "message": message, "field": field}
    if words is not None:
        detail["words"] = words
    return {"error": detail}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None, words: list[str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, field, words), status_code=status, headers=headers)


def _field_of(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    # a constrained type adds its own name to the location (e.g. "function-after[...]"); drop it
    parts = [p for p in parts if "[" not in p]
    return ".".join(parts) if parts else "body"


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors()) or [{"type": "invalid", "loc": ("body",), "msg": "invalid request"}]
    first = errors[0]
    kind = str(first.get("type", "invalid"))
    field = _field_of(first.get("loc", ("body",)))
    if kind == "json_invalid":
        return error_response(400, "invalid_json", "the request body is not valid JSON", "body")
    if kind == "extra_forbidden":
        message = f"{field}: unknown field"
    elif kind == "missing":
        message = f"{field}: required field is missing"
    else:
        message = f"{field}: {first.get('msg', 'invalid value')}"
    code = _PYDANTIC_CODES.get(kind, "wrong_type" if kind.endswith("_type") else "invalid_value")
    if field == "body" and kind.endswith("_type"):
        message = "the request body must be a JSON object"
    return error_response(422, code, message[:300], field)


def install_error_handlers(app: FastAPI) -> None:
    """JSON errors for API errors, HTTP errors, validation errors and anything unexpected."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers, exc.words)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404:
            message = "not found"
        field = "body" if exc.status_code == 413 else None
        if exc.status_code == 400:  # FastAPI's only 400: a body it could not parse (e.g. not UTF-8)
            code, message, field = "invalid_json", "the request body is not valid JSON (UTF-8)", "body"
        return error_response(exc.status_code, code, message, field, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal server error")


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


async def send_error(send: Send, status: int, code: str, message: str, field: str | None = None,
                     headers: dict[str, str] | None = None) -> None:
    """Answer an error from ASGI middleware (outside FastAPI's handlers), JSON as everywhere."""
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await _send_json(send, status, error_body(code, message, field), extra)


class BodyTooLargeError(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class GuardMiddleware:
    """Outer ASGI guard: body size limit, security headers, catch-all for errors.

    A declared ``Content-Length`` above ``max_body`` is refused at once; a body streamed
    without one is counted and refused when it crosses the limit.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_body
            except ValueError:
                await _send_json(send, 400, error_body("bad_request", "invalid Content-Length header", "body"))
                return
            if too_large:
                message = f"the request body is larger than {self.max_body} bytes"
                await _send_json(send, 413, error_body("body_too_large", message, "body"), [(b"connection", b"close")])
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLargeError(self.max_body)
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await _send_json(send, 500, error_body("internal_error", "internal server error"))
