"""Files API schemas: the upload form, FileObject, its list page and the deletion result."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from tunesmith.api.protocol.common import Deleted, ListPage

# Purposes a client may upload with; responses also carry the ones tunesmith writes itself
# ("fine-tune-results" for a job's step_metrics.csv).
UploadPurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
UPLOAD_PURPOSES: tuple[str, ...] = get_args(UploadPurpose)
EXPIRES_MIN_SECONDS = 3600  # one hour
EXPIRES_MAX_SECONDS = 30 * 24 * 3600  # thirty days


class FileUploadForm(BaseModel):
    """`POST /files` as multipart/form-data. Documentation only: the route parses the body as it
    arrives (files.create streams it), so this model shapes /openapi.json, not the parsing."""

    model_config = ConfigDict(populate_by_name=True)

    file: bytes = Field(description="The file itself; stored by id, never under this name.")
    purpose: UploadPurpose = Field(description="What the file is for; fine-tuning needs fine-tune.")
    expires_after_anchor: Literal["created_at"] | None = Field(
        default=None, alias="expires_after[anchor]", description="The expiry counts from here."
    )
    expires_after_seconds: int | None = Field(
        default=None,
        alias="expires_after[seconds]",
        ge=EXPIRES_MIN_SECONDS,
        le=EXPIRES_MAX_SECONDS,
        description="Seconds after the anchor when the file expires (recorded in expires_at).",
    )


class FileObject(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(description="file-…")
    object: Literal["file"] = "file"
    bytes: int
    created_at: int = Field(description="Unix seconds.")
    filename: str = Field(description="The client's name for it, for display only.")
    purpose: str
    status: Literal["uploaded", "processed", "error"] = Field(
        default="processed", description="Deprecated by OpenAI; always processed here."
    )
    expires_at: int | None = None
    status_details: str | None = None


class FileList(ListPage):
    data: list[FileObject]


class FileDeleted(Deleted):
    object: Literal["file"] = "file"
