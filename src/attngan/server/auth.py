"""The optional API key: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

Two layers share one comparison (:func:`key_matches`). :func:`api_key_dependency` guards a
route and declares the key in the OpenAPI schema; :class:`ApiKeyMiddleware` refuses a request
to a guarded route before its body is read, so a client without the key learns nothing about
its body (an invalid one gets the same 401 as a valid one).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError, send_error

UNAUTHORIZED = ("unauthorized", "a valid API key is required (X-API-Key or Authorization: Bearer)", "X-API-Key")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def key_matches(expected: str, api_key: str | None, bearer: str | None) -> bool:
    """Whether the ``X-API-Key`` value, else the bearer token, is ``expected`` (constant time).

    Header values are the strings Starlette gives (bytes read as Latin-1), so a key sent as
    UTF-8 bytes matches the same key given to the server as text.
    """
    given = api_key if api_key else (bearer or "")
    return hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode("utf-8"))


def _bearer_token(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>`` (read as FastAPI's ``HTTPBearer`` reads it), else None."""
    scheme, _, token = (authorization or "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def api_key_dependency(expected: str) -> Any:
    """A FastAPI dependency raising a 401 :class:`ApiError` unless the request carries the key."""
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
    bearer = HTTPBearer(auto_error=False)

    async def check(key: str | None = Security(key_header),
                    credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        if not key_matches(expected, key, credentials.credentials if credentials else None):
            raise ApiError(401, *UNAUTHORIZED, headers=CHALLENGE)

    return check


class ApiKeyMiddleware:
    """Answers 401 to a request for one of ``routes`` without the key, before its body is read."""

    def __init__(self, app: ASGIApp, expected: str, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.expected = expected
        self.routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(route.matches(scope)[0] is not Match.NONE for route in self.routes):
            headers: dict[str, str] = {}
            for name, value in scope.get("headers") or []:  # the first of repeated headers, as Starlette
                headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
            if not key_matches(self.expected, headers.get("x-api-key"), _bearer_token(headers.get("authorization"))):
                await send_error(send, 401, *UNAUTHORIZED, headers=CHALLENGE)
                return
        await self.app(scope, receive, send)
