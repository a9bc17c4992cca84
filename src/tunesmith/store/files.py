"""Uploaded and produced files, kept under the home folder by id, never by the client's name."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tunesmith.errors import NotFoundError, TooLargeError
from tunesmith.store.db import new_id

if TYPE_CHECKING:
    from tunesmith.store.db import Store

CHUNK = 1024 * 1024


@dataclass
class FileRow:
    id: str
    created_at: int
    bytes: int
    filename: str
    purpose: str
    path: str
    status: str
    expires_at: int | None

    def to_openai(self) -> dict:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.status,
            "expires_at": self.expires_at,
            "status_details": None,
        }


class Files:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _insert(self, file_id: str, path: Path, filename: str, purpose: str, size: int) -> FileRow:
        now = int(time.time())
        self.store.execute(
            "INSERT INTO files (id, created_at, bytes, filename, purpose, path, status) "
            "VALUES (?, ?, ?, ?, ?, ?, 'processed')",
            [file_id, now, size, filename, purpose, str(path)],
        )
        return self.get(file_id)

    def save_stream(
        self, stream: BinaryIO, filename: str, purpose: str, max_bytes: int | None = None
    ) -> FileRow:
        """Copy a stream to disk in chunks (never whole in memory); refuse it past `max_bytes`."""
        file_id = new_id("file-")
        folder = self.store.settings.files_dir
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / file_id
        tmp = folder / f".{file_id}.part"
        size = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLargeError(
                            f"The file {filename!r} is larger than the {max_bytes:,}-byte limit.",
                            "Split it, or start the server with a larger TUNESMITH_MAX_UPLOAD_BYTES.",
                            param="file",
                        )
                    out.write(chunk)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return self._insert(file_id, final, filename, purpose, size)

    def add_path(self, source: Path, purpose: str, filename: str | None = None) -> FileRow:
        """Register a copy of a file on disk (CLI data, results CSVs)."""
        with open(source, "rb") as stream:
            return self.save_stream(stream, filename or source.name, purpose)

    def get(self, file_id: str) -> FileRow:
        rows = self.store.query("SELECT * FROM files WHERE id = ?", [file_id])
        if not rows:
            raise NotFoundError(
                f"No such file: {file_id!r}.", param="file_id", code="file_not_found"
            )
        return FileRow(**dict(rows[0]))

    def list(
        self,
        purpose: str | None = None,
        order: str = "desc",
        limit: int = 10000,
        after: str | None = None,
    ) -> tuple[list[FileRow], bool]:
        where, params = "1=1", []
        if purpose:
            where, params = "purpose = ?", [purpose]
        direction = "ASC" if order == "asc" else "DESC"
        if after is not None:
            pivot = self.get(after)
            op = ">" if order == "asc" else "<"
            where += f" AND (created_at, id) {op} (?, ?)"
            params += [pivot.created_at, pivot.id]
        rows = self.store.query(
            f"SELECT * FROM files WHERE {where} ORDER BY created_at {direction}, id {direction} "
            "LIMIT ?",
            [*params, limit + 1],
        )
        return [FileRow(**dict(r)) for r in rows[:limit]], len(rows) > limit

    def delete(self, file_id: str) -> None:
        row = self.get(file_id)
        self.store.execute("DELETE FROM files WHERE id = ?", [file_id])
        path = Path(row.path)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
