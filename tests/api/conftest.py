"""API test fixtures: official OpenAI SDK clients for the live servers of `serve` (tests/conftest.py).

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

A test that asks for `engine` runs once per engine (TUNESMITH_ENGINE for the servers it starts):
the API's decoding contract is the same on tunesmith's own, on llama.cpp's and on vLLM's. A test that pins
`@pytest.mark.parametrize("engine", ["builtin"], indirect=True)` looks inside the builtin one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest

from tunesmith.infer import llama_server, vllm_server
from tunesmith.infer.engine import ENGINES
from tunesmith.infer.vllm import start_server

CLIENT_TIMEOUT = 60.0  # a hung request fails the test instead of waiting the SDK's 600 s


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


@pytest.fixture(scope="session")
def vllm_on_tiny(tiny_model_dir) -> Iterator[str]:
    """One vLLM server on the tiny model for the session, at this URL: it takes ~40 s to start
    on a CPU, so the vllm engine of each test's server attaches to it (TUNESMITH_VLLM_URL, as
    to a fleet's) instead of starting its own. infer/test_vllm.py starts its own."""
    server = start_server(vllm_server.require(), tiny_model_dir, max_batch=16, context=2048)
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The engine this test's servers decode on."""
    if request.param == "llamacpp" and llama_server.find() is None:
        pytest.skip(
            "no llama-server on this machine: `make llama-server` builds it once (about 8 min "
            "on 2 cores), or set TUNESMITH_LLAMA_SERVER"
        )
    if request.param == "vllm" and vllm_server.find() is None:
        pytest.skip(
            "no vLLM for tunesmith on this machine: `make vllm` installs it once into a "
            "virtualenv of its own, or set TUNESMITH_VLLM_PYTHON"
        )
    if request.param == "vllm":
        monkeypatch.setenv("TUNESMITH_VLLM_URL", request.getfixturevalue("vllm_on_tiny"))
    monkeypatch.setenv("TUNESMITH_ENGINE", request.param)
    return request.param
