"""The FastAPI app factory: state built at startup (never at import), routers under /v1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from tunesmith import __version__
from tunesmith.api.deps import require_key
from tunesmith.api.errors import register_error_handlers
from tunesmith.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, workers: int = 1, max_batch: int = 16
) -> FastAPI:
    """The app. `workers` training processes run queued jobs (0: none, jobs wait in the queue)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from tunesmith.infer.engine import Engine
        from tunesmith.jobs.worker import Supervisor
        from tunesmith.store import open_store

        app.state.store = open_store(settings)
        app.state.engine = Engine(max_batch=max_batch)
        app.state.supervisor = Supervisor(settings, workers=workers)
        app.state.supervisor.start()
        try:
            yield
        finally:
            app.state.supervisor.stop()
            app.state.engine.close()
            app.state.store.close()

    app = FastAPI(
        title="tunesmith",
        version=__version__,
        description="OpenAI-compatible fine-tuning and chat API for open models, on your machine.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    register_error_handlers(app)

    from tunesmith.api.routes import chat, comparisons, completions, files, fine_tuning, models

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
    for module in (files, fine_tuning, models, chat, completions, comparisons):
        v1.include_router(module.router)
    app.include_router(v1)
    return app
