"""API test fixtures: a live uvicorn server on a free port, and official OpenAI SDK clients for it.

The tests talk to a real server over HTTP with the unchanged `openai` SDK, the way users do:

    def test_something(serve, client):
        url = serve()                       # "http://127.0.0.1:PORT/v1"; workers=0, no auth
        sdk = client(url)                   # the SDK on url, api_key="test", max_retries=0
        assert sdk.models.list().data

    def test_with_a_worker(serve, client):
        sdk = client(serve(workers=1))      # one training process claims queued jobs

    def test_auth(serve, client):
        url = serve(api_keys=["sk-right"])
        client(url, api_key="sk-right").models.list()

`serve(**settings)` passes extra keywords to `Settings` (e.g. `max_upload_bytes=1000`). Like a real
server, a test server resolves no local model folder unless allowed: a test that names the tiny
model's folder starts it with `serve(model_dirs=[tiny_model_dir])`. The server's
home is the test's TUNESMITH_HOME (the autouse `tunesmith_home` fixture), so a test can open the
same store with `open_store()` to arrange or inspect state. Several servers may run in one test; each
is shut down cleanly (lifespan included: the Supervisor stops its workers) when the test ends, after
the clients made with `client` are closed. `sdk` is `client(serve())` for the common case.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
import uvicorn

from tunesmith.api.app import create_app
from tunesmith.settings import Settings

STARTUP_SECONDS = 60
SHUTDOWN_SECONDS = 90  # the Supervisor gives a training worker time to checkpoint
CLIENT_TIMEOUT = 60.0  # a hung request fails the test instead of waiting the SDK's 600 s


class LiveServer:
    """uvicorn serving `create_app(settings, workers=...)` from a background thread."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.app = create_app(settings, workers=workers)
        # Bind the port here and hand the socket over: no window in which another process could
        # take a "free" port between finding it and listening on it.
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True, name="uvicorn"
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.server.started:
            if not self.thread.is_alive():  # the lifespan failed; uvicorn logged why
                raise RuntimeError(f"the test server at {self.url} did not start")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the test server at {self.url} did not start in time")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=SHUTDOWN_SECONDS)
        self.socket.close()
        if self.thread.is_alive():
            raise RuntimeError(f"the test server at {self.url} did not shut down")


def servers(home: Path) -> Iterator[Callable[..., str]]:
    """The `serve` factory for servers in `home`; each one started stops when the fixture ends."""
    started: list[LiveServer] = []

    def start(workers: int = 0, api_keys: list[str] | None = None, **settings) -> str:
        settings.setdefault("home", home)
        server = LiveServer(Settings(api_keys=api_keys or [], **settings), workers)
        server.start()
        started.append(server)
        return server.url

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def serve(tunesmith_home: Path) -> Iterator[Callable[..., str]]:
    """A factory: `serve(workers=0, api_keys=None, **settings)` starts a server, returns its base
    URL (with /v1). Every server started is stopped when the test ends."""
    yield from servers(tunesmith_home)


@pytest.fixture(scope="module")
def serve_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    """`serve` for servers that the tests of one module share (Schemathesis runs one test per
    operation against one server); their home is a folder of their own."""
    yield from servers(tmp_path_factory.mktemp("shared-home"))


@pytest.fixture
def client(serve) -> Iterator[Callable[..., openai.OpenAI]]:
    """A factory: `client(url, api_key="test", **kwargs)` is the official SDK pointed at a test
    server, with retries off (a retried 4xx/5xx would hide a bug). Extra keywords go to
    `openai.OpenAI` (e.g. `http_client=openai.DefaultHttpxClient(event_hooks=...)`)."""
    made: list[openai.OpenAI] = []

    def make(url: str, api_key: str = "test", **kwargs) -> openai.OpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", CLIENT_TIMEOUT)
        sdk = openai.OpenAI(base_url=url, api_key=api_key, **kwargs)
        made.append(sdk)
        return sdk

    yield make
    for sdk in made:  # before the servers stop (this fixture tears down first): no open sockets
        sdk.close()


@pytest.fixture
def sdk(serve, client) -> openai.OpenAI:
    """The SDK on a fresh server with no workers and no auth: jobs wait in the queue."""
    return client(serve())
