"""`tunesmith models list`: every model this machine can call, with size and place."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tunesmith.cli.console import out

app = typer.Typer(help="The model catalog.", no_args_is_help=True)


def _human(n: int | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{suffix}{unit}" if suffix == "" else f"{n:.1f}{suffix}{unit}"
        n /= 1000
    return f"{n:.1f}P{unit}"


@app.command("list")
def list_cmd(
    extra: Annotated[
        list[str] | None,
        typer.Argument(
            help="Local Hugging Face folders, .gguf files (or hub ids, when a hub is reachable)."
        ),
    ] = None,
) -> None:
    """Built-in models, folders you name, and every fine-tuned model and checkpoint."""
    from tunesmith.cli.store import store
    from tunesmith.models.listing import builtin_rows, extra_rows, trained_rows

    rows = builtin_rows() + extra_rows(extra or []) + trained_rows(store().models.list())
    table = Table(show_edge=False)
    table.add_column("model", overflow="fold")
    table.add_column("kind")
    table.add_column("parameters", justify="right")
    table.add_column("size", justify="right")
    table.add_column("location", overflow="fold")
    for row in rows:
        name = f"{row.name} [green](default)[/]" if row.default else row.name
        params = _human(row.parameters)
        if row.adapter:
            params = f"+{params} LoRA"
        table.add_row(name, row.kind, params, _human(row.bytes, "B"), row.location)
    out.print(table)
