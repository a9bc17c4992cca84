"""Models: the built-in catalog plus every registered fine-tuned model and checkpoint."""

from __future__ import annotations

import logging
import shutil
from functools import cache
from pathlib import Path

from fastapi import APIRouter

from tunesmith.api.deps import SettingsDep, StoreDep
from tunesmith.api.protocol.models import Model, ModelDeleted, ModelList
from tunesmith.errors import NotFoundError, TunesmithError
from tunesmith.models.catalog import BUILTINS
from tunesmith.models.listing import ModelRow, builtin_rows, trained_rows
from tunesmith.models.spec import ModelSpec
from tunesmith.settings import Settings

router = APIRouter(tags=["models"])
log = logging.getLogger(__name__)
BUILTIN_OWNER = "tunesmith"
TRAINED_KINDS = ("fine-tuned", "checkpoint")


@cache
def _builtin_created(name: str) -> int:
    """When the built-in model's file was installed: the closest thing it has to a birth date."""
    from tunesmith.models.loading import package_folder

    builtin = BUILTINS[name]
    try:
        return int((package_folder(builtin.package) / builtin.gguf_file).stat().st_mtime)
    except (TunesmithError, OSError):  # not installed: still listed, loading it explains why
        return 0


def _details(row: ModelRow) -> dict:
    """The rows `tunesmith models list` prints, as the `tunesmith` extension of a model."""
    return {
        "kind": row.kind,
        "base_model": row.base,
        "job": row.job,
        "parameters": row.parameters,
        "size_bytes": row.bytes,
        "adapter": row.adapter,
        "default": row.default,
    }


def _builtins() -> list[dict]:
    return [
        {
            "id": row.name,
            "object": "model",
            "created": _builtin_created(row.name),
            "owned_by": BUILTIN_OWNER,
            "tunesmith": _details(row),
        }
        for row in builtin_rows()
    ]


def _trained(specs: list[ModelSpec]) -> list[dict]:
    return [
        {
            "id": spec.name,
            "object": "model",
            "created": spec.created,
            "owned_by": spec.owned_by,
            "tunesmith": _details(row),
        }
        for spec, row in zip(specs, trained_rows(specs), strict=True)
    ]


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(
        f"The model {name!r} does not exist.",
        "GET /v1/models lists the built-in models and every fine-tuned model and checkpoint.",
        param="model",
        code="model_not_found",
    )


@router.get("/models", response_model=ModelList)
def list_models(store: StoreDep) -> dict:
    """Built-in models first, then fine-tuned models and checkpoints, oldest first."""
    return {"object": "list", "data": _builtins() + _trained(store.models.list())}


# `{model:path}`: fine-tuned names hold colons (which the SDK leaves as they are) and a model name
# may hold a slash.
@router.get("/models/{model:path}", response_model=Model)
def retrieve_model(model: str, store: StoreDep) -> dict:
    if model in BUILTINS:
        return next(m for m in _builtins() if m["id"] == model)
    spec = store.models.get(model)
    if spec is None:
        raise _not_found(model)
    return _trained([spec])[0]


@router.delete("/models/{model:path}", response_model=ModelDeleted)
def delete_model(model: str, store: StoreDep, settings: SettingsDep) -> dict:
    """Unregister a fine-tuned model or checkpoint. A fine-tuned model's own folder
    (`runs/<job>/model`) goes with it; checkpoint folders stay (a paused or cancelled job resumes
    from them) and base models are never deleted."""
    spec = store.models.get(model)
    if model in BUILTINS or (spec is not None and spec.kind not in TRAINED_KINDS):
        raise TunesmithError(
            f"{model!r} is a base model; only fine-tuned models and checkpoints can be deleted.",
            "Base models ship with tunesmith (or are your own folders) and stay.",
            param="model",
            code="model_not_deletable",
        )
    if spec is None:
        raise _not_found(model)
    store.models.delete(model)
    if spec.kind == "fine-tuned":
        _remove_own_folder(store, settings, spec)
    return {"id": model, "object": "model", "deleted": True}


def _remove_own_folder(store, settings: Settings, spec: ModelSpec) -> None:
    """Delete `runs/<job>/model` only when it is this model's own adapter (or full weights), it
    lies under the runs folder, and no other registered model still loads from it."""
    job_id = spec.extra.get("job_id")
    if not job_id:
        return
    try:
        own = (Path(store.jobs.get(job_id).run_dir) / "model").resolve()
    except NotFoundError:
        return
    folder = Path(spec.adapter if spec.adapter is not None else spec.weights).resolve()
    if folder != own or not own.is_relative_to(settings.runs_dir.resolve()):
        return
    for other in store.models.list():
        used = {Path(other.weights).resolve()} | (
            {Path(other.adapter).resolve()} if other.adapter else set()
        )
        if own in used:  # e.g. a full fine-tune trained further from this one
            log.info("keeping %s: %s still loads from it", own, other.name)
            return
    shutil.rmtree(own, ignore_errors=True)
