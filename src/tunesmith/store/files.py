"""Uploaded and produced files, kept under the home folder by id, never by the client's name."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tunesmith.errors import DiskFullError, NotFoundError, TooLargeError, out_of_space
from tunesmith.ids import new_id

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

    def _insert(
        self,
        file_id: str,
        path: Path,
        filename: str,
        purpose: str,
        size: int,
        expires_after: int | None = None,
    ) -> FileRow:
        now = int(time.time())
        expires_at = now + expires_after if expires_after is not None else None
        self.store.execute(
            "INSERT INTO files (id, created_at, bytes, filename, purpose, path, status, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 'processed', ?)",
            [file_id, now, size, filename, purpose, str(path), expires_at],
        )
        return self.get(file_id)

    def begin(self, filename: str, max_bytes: int | None = None) -> PendingFile:
        """A file to be written chunk by chunk (an upload parsed as it arrives); use it in `with`."""
        return PendingFile(self, filename, max_bytes)

    def save_stream(
        self, stream: BinaryIO, filename: str, purpose: str, max_bytes: int | None = None
    ) -> FileRow:
        """Copy a stream to disk in chunks (never whole in memory); refuse it past `max_bytes`."""
        with self.begin(filename, max_bytes) as pending:
            while chunk := stream.read(CHUNK):
                pending.write(chunk)
            return pending.commit(purpose)

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


def kept_suffix(filename: str) -> str:
    """A file name's suffix, if it is a plain one (letters and digits, at most 8): never a path."""
    suffix = Path(filename).suffix.lower()
    return suffix if len(suffix) <= 9 and suffix[1:].isalnum() and suffix[1:].isascii() else ""


class PendingFile:
    """A file being written in chunks under a hidden `.part` name, then moved into place.

    `commit` moves it to its id and records its row; leaving the `with` block without a commit
    (a refused size, a broken upload, a bad form field) deletes it: no partial file, no row.
    """

    def __init__(self, files: Files, filename: str, max_bytes: int | None) -> None:
        self._files = files
        self.id = new_id("file-")
        self.filename = filename
        self.max_bytes = max_bytes
        self.size = 0
        folder = files.store.settings.files_dir
        folder.mkdir(parents=True, exist_ok=True)
        # The client's suffix is kept (`file-….csv`): readers tell CSV, Parquet and JSONL apart by it.
        self._final = folder / (self.id + kept_suffix(filename))
        self._tmp = folder / f".{self.id}.part"
        self._out: BinaryIO = open(self._tmp, "wb")  # noqa: SIM115 (closed by commit/discard)
        self._open = True

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise TooLargeError(
                f"The file {self.filename!r} is larger than the {self.max_bytes:,}-byte limit.",
                "Split it, or start the server with a larger TUNESMITH_MAX_UPLOAD_BYTES.",
                param="file",
            )
        with self._disk_full_is_an_error():
            self._out.write(chunk)

    @contextmanager
    def _disk_full_is_an_error(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if not out_of_space(exc):
                raise
            raise DiskFullError(
                f"No space left to store {self.filename!r}; nothing of it was kept.",
                "Free some disk space in the tunesmith home folder, then upload it again.",
                param="file",
            ) from exc

    def commit(self, purpose: str, expires_after: int | None = None) -> FileRow:
        """Move the bytes into place under the id and record the row (expiring after N s)."""
        with self._disk_full_is_an_error():  # the last buffered bytes are written here
            self._out.close()
        os.replace(self._tmp, self._final)
        self._open = False
        try:
            return self._files._insert(
                self.id, self._final, self.filename, purpose, self.size, expires_after
            )
        except BaseException:
            self._final.unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        if self._open:
            with suppress(OSError):  # a full disk fails the flush again: the bytes go anyway
                self._out.close()
            self._tmp.unlink(missing_ok=True)
            self._open = False

    def __enter__(self) -> PendingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
