"""Exports (a tunesmith extension): `tunesmith export` as a background task with events.

`POST /v1/models/{model}/exports` queues one; a worker writes it into its own folder, checks it
by loading it back, and the files are downloaded from `/v1/exports/{id}/files/{name}`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from tunesmith.api.deps import StoreDep
from tunesmith.api.protocol.common import page
from tunesmith.api.protocol.exports import ExportCreate
from tunesmith.errors import NotFoundError
from tunesmith.store.tasks import EXPORT

router = APIRouter(tags=["exports"])


@router.post("/models/{model:path}/exports")
def create_export(model: str, body: ExportCreate, store: StoreDep) -> dict:
    """Queue an export of any model the API can name; poll it, or read its events."""
    from tunesmith.export.run import check_quant

    spec = store.models.resolve(model)  # the API's folder rules apply here
    config = {
        "model": spec.name,
        "format": body.format,
        "quant": check_quant(body.format, body.quant),
        "check": body.check,
    }
    return store.exports.create(config).to_api(EXPORT)


@router.get("/exports")
def list_exports(
    store: StoreDep, after: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict:
    result = store.exports.list(after=after, limit=limit)
    return page([row.to_api(EXPORT) for row in result.data], result.has_more)


@router.get("/exports/{export_id}")
def get_export(export_id: str, store: StoreDep) -> dict:
    return store.exports.get(export_id).to_api(EXPORT)


@router.get("/exports/{export_id}/events")
def export_events(
    export_id: str,
    store: StoreDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict:
    store.exports.get(export_id)
    result = store.exports.events(export_id, after=after, limit=limit)
    return page(result.data, result.has_more)


@router.post("/exports/{export_id}/cancel")
def cancel_export(export_id: str, store: StoreDep) -> dict:
    """Cancel a queued or running export; a running one stops at its next stage, keeping nothing."""
    row = store.exports.move(export_id, "cancelled")
    store.exports.event(export_id, "Export cancel requested")
    return row.to_api(EXPORT)


@router.delete("/exports/{export_id}")
def delete_export(export_id: str, store: StoreDep) -> dict:
    """Delete an ended export and its files."""
    store.exports.delete(export_id)
    return {"id": export_id, "object": "export.deleted", "deleted": True}


@router.get(
    "/exports/{export_id}/files/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def export_file(export_id: str, name: str, store: StoreDep) -> FileResponse:
    """One file of a finished export (the GGUF, the Modelfile, a safetensors shard…)."""
    row = store.exports.get(export_id)
    files = (row.result or {}).get("files") or []
    folder = Path(row.out_dir)
    if row.status != "succeeded" or name not in files or not (folder / name).is_file():
        raise NotFoundError(
            f"Export {export_id} has no file {name!r} (it is {row.status}).",
            "GET /v1/exports/{id} lists its files once it has succeeded.",
            param="name",
        )
    return FileResponse(folder / name, media_type="application/octet-stream", filename=name)
