"""`tunesmith jobs list|show|events`: read jobs from the store (CLI and API jobs alike)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer
from rich.table import Table

from tunesmith.cli.console import out

app = typer.Typer(help="Fine-tuning jobs in this home folder.", no_args_is_help=True)


def _when(ts: int | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


@app.command("list")
def list_cmd(limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20) -> None:
    """Jobs, newest first."""
    from tunesmith.cli.store import store

    page = store().jobs.list(limit=limit)
    table = Table(show_edge=False)
    for column in ("job", "created", "status", "model", "fine-tuned model"):
        table.add_column(column, overflow="fold")
    for job in page.data:
        table.add_row(
            job.id,
            _when(job.created_at),
            job.status,
            job.model,
            job.fine_tuned_model if job.status == "succeeded" else "-",
        )
    out.print(table)


@app.command("show")
def show_cmd(
    job_id: Annotated[str, typer.Argument(help="ftjob-…")],
    as_json: Annotated[bool, typer.Option("--json", help="OpenAI's job object as JSON.")] = False,
) -> None:
    """One job: status, hyperparameters, result, checkpoints."""
    from tunesmith.cli.store import store

    job = store().jobs.get(job_id)
    data = job.to_openai(store().settings.org)
    if as_json:
        out.print_json(json.dumps(data))
        return
    for key in (
        "id",
        "status",
        "model",
        "fine_tuned_model",
        "training_file",
        "validation_file",
        "trained_tokens",
        "seed",
    ):
        out.print(f"[bold]{key:>17}[/] {data[key]}")
    out.print(f"[bold]{'hyperparameters':>17}[/] {json.dumps(data['hyperparameters'])}")
    out.print(
        f"[bold]{'created':>17}[/] {_when(job.created_at)}   finished {_when(job.finished_at)}"
    )
    if job.error:
        out.print(f"[bold red]{'error':>17}[/] {job.error.get('message')}")
    out.print(f"[bold]{'run folder':>17}[/] {job.run_dir}")
    for ckpt in store().checkpoints.list(job.id, limit=100).data:
        loss = ckpt.metrics.get("train_loss")
        out.print(
            f"[bold]{'checkpoint':>17}[/] {ckpt.model_name} (step {ckpt.step_number}, loss {loss:.3f})"
            if loss is not None
            else f"[bold]{'checkpoint':>17}[/] {ckpt.model_name}"
        )


@app.command("events")
def events_cmd(
    job_id: Annotated[str, typer.Argument(help="ftjob-…")],
    limit: Annotated[int, typer.Option(help="How many of the newest events.")] = 50,
) -> None:
    """A job's events, oldest first (OpenAI's messages)."""
    from tunesmith.cli.store import store

    store().jobs.get(job_id)
    events = store().events.list(job_id, limit=limit).data
    for event in reversed(events):
        style = {"error": "red", "warn": "yellow"}.get(event.level, "")
        text = f"[{style}]{event.message}[/]" if style else event.message
        out.print(f"[dim]{_when(event.created_at)}[/] {text}")
