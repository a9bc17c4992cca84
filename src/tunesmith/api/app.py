"""The FastAPI app factory: state built at startup (never at import), routers under /v1, the web
UI at `/`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from tunesmith import __version__
from tunesmith.api.errors import register_error_handlers
from tunesmith.api.guard import Guard
from tunesmith.errors import TunesmithError
from tunesmith.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, workers: int = 1, max_batch: int = 16
) -> FastAPI:
    """The app. `workers` training processes run queued jobs (0: none, jobs wait in the queue)."""
    # A client is not the operator: its model names resolve only to the catalog, the registered
    # models, the folders under model_dirs and (when enabled) hub ids. The workers inherit this.
    settings = (settings or get_settings()).model_copy(update={"any_model_folder": False})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from tunesmith.evals.queued import run_queued_comparison
        from tunesmith.infer.engine import open_engine
        from tunesmith.jobs.exports import run_queued_export
        from tunesmith.jobs.worker import Supervisor
        from tunesmith.store import open_store

        app.state.store = open_store(settings)
        app.state.engine = open_engine(
            settings.engine,
            max_batch,
            fast_decode=settings.fast_decode,
            quantize=settings.quantize,
        )
        if settings.warm:
            warm_in_background(app.state.engine, app.state.store, settings.warm)
        # Comparisons run in the same workers; evals/ is above jobs/, so the runner is passed in.
        runners = {"comparisons": run_queued_comparison, "exports": run_queued_export}
        app.state.supervisor = Supervisor(settings, workers=workers, task_runners=runners)
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
    from tunesmith.api.routes import ui

    app.add_middleware(
        Guard,
        settings=settings,
        open_paths=[*_docs_paths(app, settings), "/"],
        open_prefixes=[ui.UI_PREFIX],
    )

    from tunesmith.api.routes import (
        chat,
        comparisons,
        completions,
        data,
        exports,
        files,
        fine_tuning,
        graders,
        models,
        plans,
    )

    v1 = APIRouter(prefix="/v1")
    routers = (files, data, fine_tuning, plans, graders, models, chat, completions, comparisons)
    for module in (*routers, exports):
        v1.include_router(module.router)
    app.include_router(v1)
    from tunesmith.api import azure

    azure.mount(
        app,
        openai_routers=[files.router, fine_tuning.router, models.router],
        v1_routers=[
            files.router,
            fine_tuning.router,
            models.router,
            chat.router,
            completions.router,
        ],
    )
    ui.mount(app)
    return app


def warm_in_background(engine, store, names: list[str]) -> threading.Thread:
    """Load `names` on the engine on a thread of its own while the server already answers (a
    request for one of them meanwhile waits for that load, as it would have anyway). Names are
    resolved here, as a request's would be; one that does not resolve is logged and skipped."""
    specs = []
    for name in names:
        try:
            specs.append(store.models.resolve(name))
        except TunesmithError as exc:
            log.error("Not warming %s: %s", name, exc.message)

    def warm() -> None:
        for spec in specs:
            started = time.perf_counter()
            try:
                engine.warm(spec)
            except Exception as exc:  # the server goes on: the model's requests will say why
                log.error("Warming %s failed: %s", spec.name, exc)
                continue
            log.warning("%s is loaded (%.1f s)", spec.name, time.perf_counter() - started)

    thread = threading.Thread(target=warm, name="warm", daemon=True)
    thread.start()
    return thread


def _docs_paths(app: FastAPI, settings: Settings) -> list[str]:
    """The paths that need no key: the docs and their schema, only when the operator opens them."""
    if not settings.public_docs:
        return []
    paths = [app.openapi_url, app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url]
    return [path for path in paths if path]
