"""`tunesmith deploy` and `tunesmith deployments list|delete`: names that call a model.

The same store rows as Azure's management PUT (api/azure.py), so a deployment made here is
callable at once as `/openai/deployments/NAME/chat/completions`, and as `model=NAME` anywhere.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tunesmith.cli.console import out

app = typer.Typer(
    help="Deployments: stable names for models and checkpoints.", no_args_is_help=True
)


def deploy_command(
    model: Annotated[str, typer.Argument(help="A model or checkpoint name (ft:…, a built-in).")],
    name: Annotated[str, typer.Option("--name", help="The deployment's name.")],
) -> None:
    """Give a model or checkpoint a deployment name (Azure's deployment step); deploying a
    name again points it at the new model."""
    from tunesmith.cli.store import store
    from tunesmith.store.deployments import deploy

    row, created = deploy(store(), name, model)
    verb = "Deployed" if created else "Redeployed"
    out.print(f"{verb} [bold]{row.model}[/] as [bold]{row.name}[/].")
    out.print(
        f"Call it as model={row.name!r}, or at /openai/deployments/{row.name}/chat/completions."
    )


@app.command("list")
def list_cmd() -> None:
    """Every deployment and the model it calls."""
    from tunesmith.cli.store import store

    rows = store().deployments.list()
    if not rows:
        out.print("No deployments. `tunesmith deploy MODEL --name NAME` makes one.")
        return
    table = Table(show_edge=False)
    table.add_column("deployment")
    table.add_column("model", overflow="fold")
    table.add_column("sku")
    for row in rows:
        table.add_row(row.name, row.model, str(row.sku.get("name", "")))
    out.print(table)


@app.command("delete")
def delete_cmd(name: Annotated[str, typer.Argument(help="The deployment to delete.")]) -> None:
    """Delete a deployment (its model stays)."""
    from tunesmith.cli.store import store
    from tunesmith.errors import NotFoundError

    if not store().deployments.delete(name):
        raise NotFoundError(
            f"There is no deployment named {name!r}.", "`tunesmith deployments list` shows them."
        )
    out.print(f"Deleted the deployment [bold]{name}[/].")
