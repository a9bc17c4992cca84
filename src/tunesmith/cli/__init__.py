"""The `tunesmith` command: a thin Typer door onto the same services the API uses."""

from __future__ import annotations

import sys

import typer

from tunesmith.cli import (
    autotrain,
    chat,
    compare,
    data,
    demo,
    deployments,
    export,
    jobs,
    models,
    serve,
    train,
)
from tunesmith.cli.console import run_guarded

app = typer.Typer(
    name="tunesmith",
    help="Fine-tune open language models on your own data, measure it, and serve it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(jobs.app, name="jobs")
app.add_typer(deployments.app, name="deployments")
app.command("deploy")(deployments.deploy_command)
train.register(app)
chat.register(app)
compare.register(app)
demo.register(app)
serve.register(app)
export.register(app)
autotrain.register(app)


def main() -> None:
    sys.exit(run_guarded(app))
