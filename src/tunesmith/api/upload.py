"""A multipart upload parsed as it arrives and written straight to disk, never whole in memory.

`files.create` sends `purpose` (and `expires_after[...]`) as small text parts and the file as one
part. python-multipart's streaming parser calls back with each piece of each part; the file's
pieces go to a `PendingFile` under a hidden name, so a body that is refused (too large, a bad
purpose, cut off) leaves neither a file nor a row behind.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from tunesmith.api.protocol.files import (
    EXPIRES_MAX_SECONDS,
    EXPIRES_MIN_SECONDS,
    UPLOAD_PURPOSES,
)
from tunesmith.errors import TooLargeError, TunesmithError

if TYPE_CHECKING:
    from tunesmith.store.files import FileRow, Files, PendingFile

log = logging.getLogger(__name__)

# Content-Length counts the boundaries, part headers and text fields as well as the file: allow
# this much around the file before refusing on the header alone (the file bytes are counted
# exactly as they arrive).
FORM_OVERHEAD = 64 * 1024
FIELD_MAX_BYTES = 1024  # purpose and expires_after[...] are short; anything longer is not ours
MAX_PARTS = 16
FILENAME_MAX = 255


def too_large(max_bytes: int) -> TooLargeError:
    return TooLargeError(
        f"The upload is larger than the {max_bytes:,}-byte limit.",
        "Split the file, or start the server with a larger TUNESMITH_MAX_UPLOAD_BYTES.",
        param="file",
    )


def bad_form(message: str, param: str | None = "file", hint: str | None = None) -> TunesmithError:
    return TunesmithError(message, hint, param=param)


def display_name(raw: bytes | None) -> str:
    """The client's file name, for display only (files are stored by id): its last path part,
    since browsers on some systems send a whole path."""
    name = (raw or b"").decode("utf-8", errors="replace")
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:FILENAME_MAX] or "upload"


class UploadForm:
    """Callbacks for python-multipart's MultipartParser: text fields are kept (small, bounded),
    the file part is written through a PendingFile as its bytes arrive."""

    def __init__(self, files: Files, max_bytes: int) -> None:
        self.files = files
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.pending: PendingFile | None = None
        self.complete = False
        self._parts = 0
        self._headers: dict[bytes, bytes] = {}
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._name: str | None = None  # the current text field; None while in the file part
        self._value = bytearray()
        self._in_file = False

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    # --- part headers ----------------------------------------------------------------------------
    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise bad_form(f"The form has more than {MAX_PARTS} parts.")
        self._headers = {}

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name", b"").decode("utf-8", errors="replace")
        if name != "file":
            self._name, self._value = name, bytearray()
            return
        if self.pending is not None:
            raise bad_form("The form holds more than one `file` part; upload one file per request.")
        self.check_purpose(required=False)  # a bad purpose sent first is refused before any bytes
        self.pending = self.files.begin(display_name(options.get(b"filename")), self.max_bytes)
        self._in_file = True

    # --- part bodies -----------------------------------------------------------------------------
    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            assert self.pending is not None
            self.pending.write(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > FIELD_MAX_BYTES:
            raise bad_form(
                f"The form field {self._name!r} is longer than {FIELD_MAX_BYTES} bytes.",
                param=self._name,
            )

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            return
        if self._name:
            self.fields[self._name] = self._value.decode("utf-8", errors="replace")
            if self._name == "purpose":
                self.check_purpose(required=False)
        self._name = None

    def _end(self) -> None:
        self.complete = True

    # --- the fields ------------------------------------------------------------------------------
    def check_purpose(self, *, required: bool) -> str | None:
        purpose = self.fields.get("purpose")
        if purpose is None:
            if required:
                raise bad_form(
                    "The form has no `purpose` field.",
                    param="purpose",
                    hint=f"Send one of: {', '.join(UPLOAD_PURPOSES)}.",
                )
            return None
        if purpose not in UPLOAD_PURPOSES:
            raise bad_form(
                f"{purpose!r} is not a valid purpose.",
                param="purpose",
                hint=f"Use one of: {', '.join(UPLOAD_PURPOSES)}.",
            )
        return purpose

    def expires_after(self) -> int | None:
        """Seconds until the file expires, from `expires_after[anchor]` and `[seconds]`."""
        anchor = self.fields.get("expires_after[anchor]")
        seconds = self.fields.get("expires_after[seconds]")
        if anchor is None and seconds is None:
            return None
        if anchor != "created_at":
            raise bad_form(
                "expires_after[anchor] must be 'created_at' when expires_after is given.",
                param="expires_after.anchor",
            )
        if seconds is None or not seconds.strip().isdigit():
            raise bad_form(
                f"expires_after[seconds] must be a whole number of seconds, not {seconds!r}.",
                param="expires_after.seconds",
            )
        value = int(seconds)
        if not EXPIRES_MIN_SECONDS <= value <= EXPIRES_MAX_SECONDS:
            raise bad_form(
                f"expires_after[seconds] must be between {EXPIRES_MIN_SECONDS} (one hour) and "
                f"{EXPIRES_MAX_SECONDS} (30 days); got {value}.",
                param="expires_after.seconds",
            )
        return value

    def finish(self) -> FileRow:
        """Check the whole form and keep the file: the row appears only now."""
        if not self.complete:
            raise bad_form("The multipart body ended before its closing boundary.")
        if self.pending is None:
            raise bad_form("The form has no `file` part.", hint="Send the file as the part `file`.")
        purpose = self.check_purpose(required=True)
        assert purpose is not None
        expires_after = self.expires_after()
        unknown = sorted(set(self.fields) - {"purpose", *_EXPIRES_FIELDS})
        if unknown:
            log.info("ignoring unknown upload form fields: %s", unknown)
        return self.pending.commit(purpose, expires_after)

    def discard(self) -> None:
        if self.pending is not None:
            self.pending.discard()


_EXPIRES_FIELDS = ("expires_after[anchor]", "expires_after[seconds]")


def _boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise bad_form(
            "An upload must be sent as multipart/form-data with a boundary.",
            hint="files.create does this; with curl use -F file=@train.jsonl -F purpose=fine-tune.",
        )
    return boundary


async def receive_upload(request: Request, files: Files, max_bytes: int) -> FileRow:
    """Parse the request body piece by piece into a stored file; refuse it with 413 as soon as
    the file bytes received so far pass `max_bytes`. (The guard has already refused a declared
    Content-Length past `max_bytes + FORM_OVERHEAD`, and meters the whole form to that.)"""
    boundary = _boundary(request.headers.get("content-type"))
    form = UploadForm(files, max_bytes)
    try:
        parser = MultipartParser(boundary, form.callbacks())
        async for chunk in request.stream():
            if chunk:
                # Parsing and the disk write run in the thread pool: the event loop keeps serving
                # other requests (chat streams) while a large file arrives.
                await run_in_threadpool(parser.write, chunk)
        parser.finalize()
        return await run_in_threadpool(form.finish)
    except FormParserError as exc:
        raise bad_form(f"The multipart body is malformed: {exc}.") from None
    except ClientDisconnect:
        raise bad_form("The client closed the connection before the upload ended.") from None
    finally:
        form.discard()  # after a commit this does nothing; otherwise no partial file stays
