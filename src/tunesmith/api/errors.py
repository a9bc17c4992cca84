"""OpenAI's error JSON for every failure, mapped once for the whole app; on Azure's routes
(`/openai/...` and the management plane's `/subscriptions/...`) Azure's codes where they differ.

Deterministic failures are 4xx and never 409 (the OpenAI SDK retries 408, 409, 429 and 5xx);
`x-should-retry: false` tells the SDK so explicitly.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesmith.errors import TunesmithError, error_body

log = logging.getLogger(__name__)
NO_RETRY = {"x-should-retry": "false"}
Door = Literal["openai", "azure", "arm"]
AZURE_PREFIX = "/openai"
ARM_PREFIX = "/subscriptions/"
ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
    "valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)


def door(path: str) -> Door:
    """Which client's error shape a path answers in."""
    if path.startswith(ARM_PREFIX):
        return "arm"
    if path == AZURE_PREFIX or path.startswith(f"{AZURE_PREFIX}/"):
        return "azure"
    return "openai"


def azure_body(exc: TunesmithError, where: Door) -> dict[str, Any]:
    """Azure's error JSON: `{"error": {"code", "message", ...}}`, with Azure's codes for what
    its clients match on (401s, unknown routes), and OpenAI's fields kept beside them."""
    body = exc.to_openai()
    error = body["error"]
    if exc.status == 401:
        error["code"] = "AuthenticationFailed" if where == "arm" else "401"
        error["message"] = f"{ACCESS_DENIED} ({exc})"
    elif exc.code == "not_found" and where == "azure":
        error["code"], error["message"] = "404", "Resource not found"
    elif error["code"] is None:
        error["code"] = str(exc.status)
    return body


def error_response(exc: TunesmithError, path: str = "/v1") -> JSONResponse:
    """The error as JSON for the door `path` belongs to: OpenAI's, or Azure's on its routes."""
    headers = dict(NO_RETRY)
    if exc.status == 401:
        headers["www-authenticate"] = "Bearer"
    where = door(path)
    body = exc.to_openai() if where == "openai" else azure_body(exc, where)
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _validation_param(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form")]
    return ".".join(parts) or None


def register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TunesmithError)
    async def tunesmith_error(request: Request, exc: TunesmithError) -> JSONResponse:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = _validation_param(tuple(first.get("loc", ())))
        message = "; ".join(
            f"{_validation_param(tuple(e.get('loc', ()))) or 'body'}: {e.get('msg')}"
            for e in exc.errors()[:5]
        )
        return error_response(
            TunesmithError(f"Invalid request: {message}", param=param), request.url.path
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        error = TunesmithError(str(exc.detail), code=code, status=exc.status_code)
        return error_response(error, request.url.path)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # Only bugs land here; a 500 lets the SDK retry, which is right for a transient fault.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = error_body(f"Internal error: {type(exc).__name__}", "server_error", None, None)
        return JSONResponse(body, status_code=500)
