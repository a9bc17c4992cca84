"""Fine-tuned models and checkpoints registered by name, each callable like a base model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.errors import TunesmithError
from tunesmith.models.spec import ModelSpec

if TYPE_CHECKING:
    from tunesmith.store.db import Store


def _spec(row) -> ModelSpec:
    return ModelSpec(
        name=row["name"],
        kind=row["kind"],
        base=row["base"],
        weights=row["weights"],
        adapter=Path(row["adapter"]) if row["adapter"] else None,
        created=row["created"],
        owned_by=row["owned_by"],
        extra={"job_id": row["job_id"]},
    )


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, spec: ModelSpec, job_id: str | None) -> None:
        """Add a model, or update it in place: registering the same name again (a resumed or
        recovered run saving its model anew) is not an error."""
        self.store.execute(
            "INSERT INTO models (name, kind, base, weights, adapter, job_id, created, owned_by) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, "
            "base = excluded.base, weights = excluded.weights, adapter = excluded.adapter, "
            "job_id = excluded.job_id, owned_by = excluded.owned_by",
            [
                spec.name, spec.kind, spec.base, spec.weights,
                str(spec.adapter) if spec.adapter else None, job_id,
                spec.created or int(time.time()), spec.owned_by,
            ],
        )  # fmt: skip

    def get(self, name: str) -> ModelSpec | None:
        rows = self.store.query("SELECT * FROM models WHERE name = ?", [name])
        return _spec(rows[0]) if rows else None

    def list(self) -> list[ModelSpec]:
        return [_spec(r) for r in self.store.query("SELECT * FROM models ORDER BY created, name")]

    def delete(self, name: str) -> bool:
        """Unregister a model; refused while a deployment calls it (its callers would break)."""
        with self.store.transaction() as conn:
            used = [
                row["name"]
                for row in conn.execute(
                    "SELECT name FROM deployments WHERE model = ? ORDER BY name", [name]
                )
            ]
            if used:
                raise TunesmithError(
                    f"The model {name!r} is deployed as {', '.join(map(repr, used))}.",
                    "Delete the deployment first (`tunesmith deployments delete NAME`, or DELETE "
                    "on its management URL), or point it at another model.",
                    param="model",
                    code="model_in_use",
                )
            return conn.execute("DELETE FROM models WHERE name = ?", [name]).rowcount > 0

    def resolve(self, name: str) -> ModelSpec:
        """A model name: a deployment's name (its model), built-in, a registered ft: model, a
        local folder or a hub id, the last two as far as the store's settings allow (any for the
        CLI; model_dirs and hub_models for the API server, whose clients are not the operator)."""
        from tunesmith.models.catalog import BUILTINS, resolve

        deployment = self.store.deployments.get(name)
        if deployment is not None:
            name = deployment.model
        settings = self.store.settings
        known = [*BUILTINS, *(spec.name for spec in self.list())]
        if settings.any_model_folder:
            return resolve(name, registry=self.get, known=known)
        return resolve(
            name,
            registry=self.get,
            known=known,
            allowed_dirs=settings.model_dirs,
            hub=settings.hub_models,
        )
