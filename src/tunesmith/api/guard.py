"""The guard in front of every request: Host, Origin, API key and body size, checked before
anything reads or parses the body.

It is plain ASGI, not a FastAPI dependency, because dependencies run after FastAPI has read the
body: a multi-gigabyte JSON body sent without a key would be read (and held) before the key check.
Refusals are OpenAI's error JSON, built by the same `error_response` as every other error.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunesmith.api.errors import error_response
from tunesmith.api.upload import FORM_OVERHEAD, too_large
from tunesmith.errors import AuthenticationError, TooLargeError, TunesmithError
from tunesmith.settings import Settings

# POST here streams a file: it has max_upload_bytes, not max_body_bytes (OpenAI's and Azure's).
UPLOAD_PATHS = frozenset({"/v1/files", "/openai/files", "/openai/v1/files"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}


class Guard:
    """ASGI middleware: refuse a request before the app sees it, or meter its body.

    Order: Host, then Origin (a browser page on another site must not even learn whether a key
    is needed), then the declared Content-Length, then the key; the body is counted as it arrives
    and cut off past the limit, for a chunked body that declares no length.
    `open_paths` and the paths under `open_prefixes` need no key (the UI's static files, and the
    docs when the operator opens them); they are GETs of files that hold no data.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        open_paths: Collection[str],
        open_prefixes: Collection[str] = (),
    ) -> None:
        self.app = app
        self.settings = settings
        self.open_paths = frozenset(open_paths)
        self.open_prefixes = tuple(open_prefixes)
        self.allowed_hosts = frozenset(h.lower() for h in settings.allowed_hosts)
        self.keys = [key.encode() for key in settings.api_keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: nothing to guard
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit, too_big = self.body_limit(scope)
        refusal = self.refusal(scope, headers, limit, too_big)
        if refusal is not None:
            await error_response(refusal, scope["path"])(scope, receive, send)
            return
        meter = BodyMeter(scope, receive, send, limit, too_big)
        await self.app(scope, meter.receive, meter.send)

    def refusal(
        self, scope: Scope, headers: Headers, limit: int, too_big: TooLargeError
    ) -> TunesmithError | None:
        """Why this request is refused before its body is read, or None."""
        host = headers.get("host", "")
        if not self.host_allowed(host, scope):
            return TunesmithError(
                f"This server does not answer for the Host {host!r}.",
                "Reach it as localhost or 127.0.0.1, or start it with --allowed-host NAME "
                "(TUNESMITH_ALLOWED_HOSTS).",
                status=403,
                code="host_not_allowed",
            )
        origin = headers.get("origin")
        if (
            scope["method"] in STATE_CHANGING
            and origin is not None
            and not self.origin_allowed(origin, host, scope["scheme"])
        ):
            return TunesmithError(
                f"Requests from the web page at {origin!r} may not change anything here.",
                "Only pages served by this server may send POST, PUT, PATCH or DELETE; "
                "list another site's host with --allowed-host.",
                status=403,
                code="origin_not_allowed",
            )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return too_big
        if self.keys and not self.is_open(scope):
            return self.key_refusal(headers)
        return None

    def is_open(self, scope: Scope) -> bool:
        path = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            return False
        return path in self.open_paths or path.startswith(self.open_prefixes)

    # --- Host and Origin -------------------------------------------------------------------------
    def host_allowed(self, host: str, scope: Scope) -> bool:
        """Loopback, the address this connection reached, or a name the operator listed.

        A DNS-rebinding page makes the browser send its own name as Host, never one of these.
        """
        if "*" in self.allowed_hosts:
            return True
        name, _ = split_host(host, scope["scheme"])
        if name is None:
            return False
        server = scope.get("server") or (None, None)
        return is_loopback(name) or name == server[0] or name in self.allowed_hosts

    def origin_allowed(self, origin: str, host: str, scheme: str) -> bool:
        """Same origin as the page's own server (scheme-default ports filled in), or a host the
        operator listed. `Origin: null` (sandboxed frames, file://) is never allowed."""
        try:
            parts = urlsplit(origin)
            origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return False
        name = parts.hostname
        if name is None:
            return False
        return (name, origin_port) == split_host(host, scheme) or name in self.allowed_hosts

    # --- the key and the body --------------------------------------------------------------------
    def key_refusal(self, headers: Headers) -> AuthenticationError | None:
        """The key as `Authorization: Bearer` (OpenAI's SDK) or `api-key` (Azure's), the same
        keys either way."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if "api-key" in headers:
            scheme, token = "bearer", headers["api-key"]
        # Compare bytes: compare_digest refuses non-ASCII str (a 500), and header values are
        # latin-1 text of the raw bytes, so this gets back exactly what the client sent.
        sent = token.encode("latin-1")
        matches = [hmac.compare_digest(sent, key) for key in self.keys]  # all, in constant time
        if scheme.lower() == "bearer" and any(matches):
            return None
        return AuthenticationError(
            "Incorrect API key provided." if token else "You didn't provide an API key.",
            "Pass it as `Authorization: Bearer <key>` (the OpenAI SDK's api_key) or as the "
            "`api-key` header (AzureOpenAI's).",
        )

    def body_limit(self, scope: Scope) -> tuple[int, TooLargeError]:
        """The most bytes this request's body may hold, and the error past it."""
        if scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS:
            # upload.py counts the file's own bytes exactly; this bounds the whole form.
            max_bytes = self.settings.max_upload_bytes
            return max_bytes + FORM_OVERHEAD, too_large(max_bytes)
        max_bytes = self.settings.max_body_bytes
        return max_bytes, TooLargeError(
            f"The request body is larger than the {max_bytes:,}-byte limit.",
            "Send less, or start the server with a larger TUNESMITH_MAX_BODY_BYTES.",
            code="request_too_large",
        )


class BodyMeter:
    """`receive` and `send` for one request whose body may not pass `limit` bytes.

    Past the limit, `receive` raises instead of handing over more, and whatever the app then
    answers (FastAPI turns a failed body read into a 400) is replaced by the 413, so the client
    learns why. The rest of the body is never read: uvicorn closes the connection.
    """

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, limit: int, error: TooLargeError
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.limit = limit
        self.error = error
        self.received = 0
        self.over = False
        self.started = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.over = True
                raise self.error
        return message

    async def send(self, message: Message) -> None:
        starts = message["type"] == "http.response.start"
        if not self.over:
            self.started = self.started or starts
            await self._send(message)
        elif starts and not self.started:
            self.started = True
            await error_response(self.error, self.scope["path"])(
                self.scope, self._receive, self._send
            )


def split_host(host: str, scheme: str) -> tuple[str | None, int | None]:
    """A Host header as (lower-case name without IPv6 brackets, port), the port defaulted from
    the scheme; (None, None) when it does not parse."""
    try:
        parts = urlsplit(f"//{host}")
        return parts.hostname, parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number, or an unclosed bracket
        return None, None


def is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False
