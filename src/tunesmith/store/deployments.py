"""Deployments: a stable name that calls a model or a checkpoint (Azure's deployment step).

A deployment is only a name. Calling it resolves to its model on every request, so redeploying
a name to a new model switches its callers at once, and a model that a deployment uses cannot be
deleted (`Registry.delete` asks `using`).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunesmith.errors import TunesmithError
from tunesmith.store.db import dumps, loads

if TYPE_CHECKING:
    from tunesmith.store.db import Store


# Azure's rule for deployment names; it also keeps them apart from ft: names (no colon).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")


@dataclass
class DeploymentRow:
    name: str
    model: str
    sku: dict[str, Any]
    properties: dict[str, Any]
    created_at: int
    updated_at: int

    @classmethod
    def from_row(cls, row) -> DeploymentRow:
        data = dict(row)
        data["sku"] = loads(data["sku"])
        data["properties"] = loads(data["properties"])
        return cls(**data)


class Deployments:
    def __init__(self, store: Store) -> None:
        self.store = store

    def put(
        self, name: str, model: str, sku: dict[str, Any], properties: dict[str, Any]
    ) -> tuple[DeploymentRow, bool]:
        """Create or replace a deployment; also says whether it is new (Azure answers 201)."""
        now = int(time.time())
        with self.store.transaction() as conn:
            new = (
                conn.execute("SELECT 1 FROM deployments WHERE name = ?", [name]).fetchone() is None
            )
            conn.execute(
                "INSERT INTO deployments (name, model, sku, properties, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET model = excluded.model, "
                "sku = excluded.sku, properties = excluded.properties, "
                "updated_at = excluded.updated_at",
                [name, model, dumps(sku), dumps(properties), now, now],
            )
        row = self.get(name)
        assert row is not None  # just written, in this process
        return row, new

    def get(self, name: str) -> DeploymentRow | None:
        rows = self.store.query("SELECT * FROM deployments WHERE name = ?", [name])
        return DeploymentRow.from_row(rows[0]) if rows else None

    def list(self) -> list[DeploymentRow]:
        rows = self.store.query("SELECT * FROM deployments ORDER BY created_at, name")
        return [DeploymentRow.from_row(r) for r in rows]

    def delete(self, name: str) -> bool:
        return self.store.execute("DELETE FROM deployments WHERE name = ?", [name]) > 0

    def using(self, model: str) -> list[str]:
        """The deployments that call `model`."""
        rows = self.store.query(
            "SELECT name FROM deployments WHERE model = ? ORDER BY name", [model]
        )
        return [r["name"] for r in rows]


def deploy(
    store: Store,
    name: str,
    model: str,
    *,
    sku: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
) -> tuple[DeploymentRow, bool]:
    """Point the deployment `name` at `model` (a model or checkpoint the store resolves, with the
    door's folder rules); also says whether the deployment is new. The CLI's `tunesmith deploy`
    and Azure's management PUT both come here."""
    if not NAME.match(name):
        raise TunesmithError(
            f"{name!r} is not a valid deployment name.",
            "Use 2 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit.",
            param="name",
            code="InvalidResourceName",
        )
    if store.deployments.get(model) is not None:
        raise TunesmithError(
            f"{model!r} is a deployment, not a model.",
            "Deploy the model it calls (`tunesmith deployments list` shows it).",
            param="properties.model.name",
            code="DeploymentModelNotSupported",
        )
    if name != model and _is_model(store, name):
        raise TunesmithError(
            f"A model is already called {name!r}: a deployment of that name would hide it.",
            "Choose another deployment name.",
            param="name",
            code="InvalidResourceName",
        )
    store.models.resolve(model)  # an unknown model is refused, naming what exists
    properties = properties or {"model": {"format": "OpenAI", "name": model, "version": "1"}}
    return store.deployments.put(
        name, model, sku or {"name": "standard", "capacity": 1}, properties
    )


def _is_model(store: Store, name: str) -> bool:
    from tunesmith.models.catalog import BUILTINS

    return name in BUILTINS or store.models.get(name) is not None
