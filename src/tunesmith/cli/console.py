"""Shared Rich consoles, and the one wrapper that turns a TunesmithError into message + hint."""

from __future__ import annotations

import typer
from rich.console import Console

from tunesmith.errors import TunesmithError
from tunesmith.logs import quiet_libraries

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def print_error(exc: TunesmithError) -> None:
    err.print(f"[bold red]Error:[/] {exc.message}")
    if exc.hint:
        err.print(f"[dim]{exc.hint}[/]")


def run_guarded(app: typer.Typer) -> int:
    """Run the app; a TunesmithError prints one paragraph and exits 1, never a traceback.

    Typer itself (standalone mode) prints usage errors and help; its usage exit code 2 becomes 1,
    because every kind of bad input exits 1 here.
    """
    quiet_libraries()
    try:
        app(standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 1 if code == 2 else code
    except TunesmithError as exc:
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("Interrupted.")
        return 130
    return 0
