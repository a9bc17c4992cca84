"""The web UI: one static page and its ES modules, served from the package at `/` and `/ui/`.

Nothing here holds logic or data: the page is a client of the same `/v1` API as the SDK, with the
key the user types (kept in the tab's sessionStorage, sent as `Authorization: Bearer`, never in a
cookie a cross-site request would carry). The files need no key; every call they make does.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent.parent / "static"
UI_PREFIX = "/ui/"
# The page runs only its own scripts; the comparison report (the server's own HTML, shown in a
# sandboxed frame) brings inline styles. Nothing may frame the UI (clickjacking).
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-src 'self' blob:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # A new tunesmith version's files must not meet an old cached page.
    "cache-control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


class UIFiles(StaticFiles):
    """The package's static files with the UI's security headers on every answer."""

    async def get_response(self, path: str, scope: Scope):
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(UI_PREFIX.rstrip("/"), UIFiles(directory=STATIC), name="ui")
