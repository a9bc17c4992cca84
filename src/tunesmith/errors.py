"""The one error family: anything raised as a TunesmithError is meant for the user to read."""

from __future__ import annotations

import errno


class TunesmithError(Exception):
    """A failure the user can act on.

    The CLI prints ``message`` and ``hint`` without a traceback and exits with ``exit_code``; the API
    answers OpenAI's error JSON with ``status`` (always 4xx for deterministic failures: the OpenAI SDK
    retries 409 and 5xx). Anything that is not a TunesmithError is a bug.
    """

    status: int = 400
    type: str = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        exit_code: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message

    def to_openai(self) -> dict:
        """OpenAI's error body: all four keys are always present."""
        return error_body(str(self), self.type, self.param, self.code)


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict:
    """The one builder of OpenAI's error JSON, for every door and every stream."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class NotFoundError(TunesmithError):
    status = 404
    code = "not_found"


class AuthenticationError(TunesmithError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class TooLargeError(TunesmithError):
    status = 413
    code = "file_too_large"


class DataError(TunesmithError):
    """Training or validation data that cannot be used; carries the full check report."""

    code = "invalid_training_file"

    def __init__(self, message: str, hint: str | None = None, *, report=None, **kwargs) -> None:
        super().__init__(message, hint, **kwargs)
        self.report = report


class DiskFullError(TunesmithError):
    """The disk (or a file-size limit) ran out while writing; nothing half-written is kept. 507,
    not 4xx: the request was fine, and may succeed once space is freed."""

    status = 507
    type = "server_error"
    code = "disk_full"


def out_of_space(exc: BaseException) -> bool:
    """A full disk (or a file-size limit) as Python, safetensors or tokenizers (Rust) report it."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    text = str(exc)
    return any(
        sign in text
        for sign in ("No space left on device", "File too large", "os error 28", "os error 27")
    )
