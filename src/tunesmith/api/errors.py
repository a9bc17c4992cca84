"""OpenAI's error JSON for every failure, mapped once for the whole app.

Deterministic failures are 4xx and never 409 (the OpenAI SDK retries 408, 409, 429 and 5xx);
`x-should-retry: false` tells the SDK so explicitly.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunesmith.errors import TunesmithError, error_body

log = logging.getLogger(__name__)
NO_RETRY = {"x-should-retry": "false"}


def error_response(exc: TunesmithError) -> JSONResponse:
    headers = dict(NO_RETRY)
    if exc.status == 401:
        headers["www-authenticate"] = "Bearer"
    return JSONResponse(exc.to_openai(), status_code=exc.status, headers=headers)


def _validation_param(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "form")]
    return ".".join(parts) or None


def register_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TunesmithError)
    async def tunesmith_error(request: Request, exc: TunesmithError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = _validation_param(tuple(first.get("loc", ())))
        message = "; ".join(
            f"{_validation_param(tuple(e.get('loc', ()))) or 'body'}: {e.get('msg')}"
            for e in exc.errors()[:5]
        )
        body = error_body(f"Invalid request: {message}", "invalid_request_error", param, None)
        return JSONResponse(body, status_code=400, headers=NO_RETRY)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        body = error_body(str(exc.detail), "invalid_request_error", None, code)
        return JSONResponse(body, status_code=exc.status_code, headers=NO_RETRY)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # Only bugs land here; a 500 lets the SDK retry, which is right for a transient fault.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = error_body(f"Internal error: {type(exc).__name__}", "server_error", None, None)
        return JSONResponse(body, status_code=500)
