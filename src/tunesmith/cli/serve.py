"""`tunesmith serve`: the OpenAI-compatible API (files, fine-tuning jobs, models, chat)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunesmith.cli.console import err

LOOPBACK = "127.0.0.1"
WILDCARDS = (None, "0.0.0.0", "::")


def serve_command(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Accept this bearer key (repeat for several). Also TUNESMITH_API_KEYS.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=0, help="Training processes (jobs run one per worker).")
    ] = 1,
    max_batch: Annotated[int, typer.Option(min=1, help="Chat requests decoded together.")] = 16,
    model_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--model-dir",
            help="Let clients name model folders under this folder (repeat for several). Also "
            "TUNESMITH_MODEL_DIRS. Without it, only built-in and fine-tuned models are served.",
        ),
    ] = None,
    hub_models: Annotated[
        bool,
        typer.Option(
            "--hub-models",
            help="Let clients name Hugging Face hub ids (downloaded on use). Also "
            "TUNESMITH_HUB_MODELS=1.",
        ),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Also answer requests for this Host name (repeat for several; `*` for any), "
            "e.g. behind a proxy. Also TUNESMITH_ALLOWED_HOSTS.",
        ),
    ] = None,
    public_docs: Annotated[
        bool,
        typer.Option(
            "--public-docs",
            help="Serve /docs and /openapi.json without a key. Also TUNESMITH_PUBLIC_DOCS=1.",
        ),
    ] = False,
    engine: Annotated[
        str | None,
        typer.Option(
            help="What decodes requests: builtin (tunesmith's own, the default), llamacpp "
            "(llama.cpp's llama-server on GGUF weights, each adapter a GGUF LoRA; build it once "
            "with `make llama-server`) or vllm (vLLM's server, adapters loaded as asked for; "
            "install it once with `make vllm`, pass it flags in TUNESMITH_VLLM_ARGS). Also "
            "TUNESMITH_ENGINE.",
        ),
    ] = None,
    warm: Annotated[
        list[str] | None,
        typer.Option(
            "--warm",
            help="Load this model as the server starts, in the background (repeat for several), "
            "so its first request waits for no load. Also TUNESMITH_WARM. Default: the built-in "
            "model on the llamacpp and vllm engines (their servers take seconds to a minute to "
            "start), none on builtin.",
        ),
    ] = None,
    quantize: Annotated[
        str | None,
        typer.Option(
            help="int8: weight-only int8 decoding of Llama-family models on a CPU (about half "
            "the bytes per step); int4: a 4-bit checkpoint's weights (a Q4_0/Q4_1 GGUF's, the "
            "built-in model's) held as 4-bit, an eighth of fp32's bytes, other weights as they "
            "are. Answers change a little with either. Also TUNESMITH_QUANTIZE.",
        ),
    ] = None,
) -> None:
    """Serve OpenAI's fine-tuning and chat API for the official `openai` SDK, unchanged.

    Example: tunesmith serve --port 8000, then OPENAI_BASE_URL=http://127.0.0.1:8000/v1
    """
    import uvicorn

    from tunesmith.api.app import create_app
    from tunesmith.settings import get_settings

    settings = get_settings()
    from tunesmith.errors import TunesmithError
    from tunesmith.infer.engine import ENGINES, check_quantize

    check_quantize(quantize)
    if engine not in (None, *ENGINES):
        raise TunesmithError(
            f"--engine {engine!r} is not a choice.", f"Use one of {', '.join(ENGINES)}."
        )
    # what an engine runs on is checked before the server starts, not at its first request
    if (engine or settings.engine) == "llamacpp":
        from tunesmith.infer import llama_server

        llama_server.require()
    if (engine or settings.engine) == "vllm":
        from tunesmith.infer import vllm_server

        if not vllm_server.urls():  # with running servers to use, starting one is optional
            vllm_server.require()
    hosts = allowed_host or settings.allowed_hosts
    # The name bound to is a name clients put in Host; the wildcard addresses are no one's name.
    flags = {
        "api_keys": api_key,
        "model_dirs": model_dir,
        "hub_models": hub_models,
        "public_docs": public_docs,
        "quantize": quantize,
        "engine": engine,
        "warm": warm,
        "allowed_hosts": hosts if host in WILDCARDS else [*hosts, host],
    }
    # A flag given overrides its TUNESMITH_* variable; one not given leaves it be.
    settings = settings.model_copy(update={k: v for k, v in flags.items() if v})
    if not settings.warm and settings.engine != "builtin":
        from tunesmith.models.catalog import DEFAULT_MODEL

        settings = settings.model_copy(update={"warm": [DEFAULT_MODEL]})
    if settings.warm:
        err.print(f"Loading {', '.join(settings.warm)} in the background; the API answers now.")
    if not settings.api_keys:
        if host is None:
            err.print(
                f"[yellow]No API key set: listening on {LOOPBACK} only.[/] Give --api-key (or "
                "TUNESMITH_API_KEYS) to require one; --host to listen elsewhere."
            )
        elif host != LOOPBACK:
            err.print(
                f"[bold red]Warning:[/] no API key, and listening on {host}: anyone who can reach it can use it."
            )
    bind = host or LOOPBACK
    err.print(
        f"tunesmith on http://{bind}:{port}/ (web UI), API at /v1 (docs: http://{bind}:{port}/docs)"
    )
    uvicorn.run(
        create_app(settings, workers=workers, max_batch=max_batch),
        host=bind,
        port=port,
        log_level="warning",
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
