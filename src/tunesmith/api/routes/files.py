"""Files: upload (streamed to disk), list, retrieve, download and delete."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from tunesmith.api.deps import SettingsDep, StoreDep
from tunesmith.api.protocol.common import page
from tunesmith.api.protocol.files import FileDeleted, FileList, FileObject, FileUploadForm
from tunesmith.api.upload import receive_upload
from tunesmith.errors import TunesmithError
from tunesmith.store.states import JOB_ACTIVE

router = APIRouter(tags=["files"])

# The body is parsed by hand as it streams in, so FastAPI cannot see it: describe it for the docs.
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": FileUploadForm.model_json_schema(by_alias=True)}
        },
    }
}


@router.post("/files", response_model=FileObject, openapi_extra=_UPLOAD_BODY)
async def create_file(request: Request, store: StoreDep, settings: SettingsDep) -> dict:
    """Upload a file (multipart: `file`, `purpose`, optional `expires_after[...]`).

    The file goes to disk as it arrives, under its new id; past `max_upload_bytes` the upload is
    refused with 413 and nothing is kept.
    """
    row = await receive_upload(request, store.files, settings.max_upload_bytes)
    return row.to_openai()


@router.get("/files", response_model=FileList)
def list_files(
    store: StoreDep,
    after: Annotated[str | None, Query(description="A file id: list the files after it.")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    order: Annotated[Literal["asc", "desc"], Query(description="By created_at.")] = "desc",
    purpose: Annotated[str | None, Query(description="Only files with this purpose.")] = None,
) -> dict:
    rows, has_more = store.files.list(purpose=purpose, order=order, limit=limit, after=after)
    return page([row.to_openai() for row in rows], has_more)


@router.get("/files/{file_id}", response_model=FileObject)
def retrieve_file(file_id: str, store: StoreDep) -> dict:
    return store.files.get(file_id).to_openai()


@router.get(
    "/files/{file_id}/content",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def file_content(file_id: str, store: StoreDep) -> FileResponse:
    """The stored bytes, streamed from disk.

    A job's results file (`step_metrics.csv`) is served as plain CSV. OpenAI returns that one
    base64-encoded (an observed quirk; its function-calling notebook runs `b64decode` on it): we
    do not copy the quirk, so `files.content(id).text` is the CSV, the same bytes that are on
    disk and that every other file returns.
    """
    row = store.files.get(file_id)
    return FileResponse(
        Path(row.path), media_type="application/octet-stream", filename=row.filename
    )


@router.delete("/files/{file_id}", response_model=FileDeleted)
def delete_file(file_id: str, store: StoreDep) -> dict:
    """Delete the file and its bytes. A file that an unfinished job still has to read is kept:
    deleting it would fail that job later, far from the cause."""
    store.files.get(file_id)  # 404 first
    for job in store.jobs.with_status(*JOB_ACTIVE):
        if file_id in (job.training_file, job.validation_file):
            raise TunesmithError(
                f"File {file_id} is used by fine-tuning job {job.id}, which is {job.status}.",
                "Cancel the job (or wait until it ends), then delete the file.",
                param="file_id",
                code="file_in_use",
            )
    store.files.delete(file_id)
    return {"id": file_id, "object": "file", "deleted": True}
