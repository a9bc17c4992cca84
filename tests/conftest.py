"""Shared fixtures: a throwaway TUNESMITH_HOME per test, the real built-in tokenizer, a tiny
randomly initialised model of the built-in model's architecture, and live servers on loopback
(`serve`, used by the API tests through the SDK and by the browser tests)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from hypothesis import settings

from tunesmith.api.app import create_app
from tunesmith.models.catalog import DEFAULT_MODEL
from tunesmith.settings import Settings

# Fuzzing (tests/data/test_fuzz.py, tests/api/test_schema_fuzz.py) explores new inputs on every
# developer run, and finds bugs that way; CI runs the same derandomized cases each time, so a
# submission's result does not depend on luck. A bug a developer's run finds gets its own test.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ORDERS = Path(__file__).resolve().parents[1] / "src" / "tunesmith" / "tasks" / "orders"


def model_cache() -> Path:
    """Where the built-in model is converted once per machine, not once per test (~20 s)."""
    default = Path.home() / ".cache" / "tunesmith-tests"
    return Path(os.environ.get("TUNESMITH_TEST_CACHE", default))


@pytest.fixture(scope="session")
def models_cache() -> Path:
    """`model_cache()` for session fixtures, set up before any test's TUNESMITH_MODELS_CACHE."""
    return model_cache()


@pytest.fixture(autouse=True)
def tunesmith_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own home (get_settings() reads the variables on each call); the
    converted built-in model is shared through TUNESMITH_MODELS_CACHE."""
    home = tmp_path / "tunesmith-home"
    monkeypatch.setenv("TUNESMITH_HOME", str(home))
    monkeypatch.setenv("TUNESMITH_MODELS_CACHE", str(model_cache()))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="session")
def builtin_dir() -> Path:
    """The built-in model's safetensors folder (converted from the GGUF on first use)."""
    from tunesmith.models.loading import builtin_folder

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_MODELS_CACHE", str(model_cache()))
        return builtin_folder(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def tokenizer(builtin_dir: Path):
    """The real SmolLM2 tokenizer and chat template."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(builtin_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A two-layer, randomly initialised Llama with the real tokenizer, saved as a local folder:
    the built-in model's architecture at a size that trains in a second."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,  # heads of 32: the smallest vLLM's CPU attention takes
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def orders() -> Path:
    """The bundled demo task's folder (train, validation and test JSONL)."""
    return ORDERS


# --- live servers (the API tests and the browser tests) -------------------------------------
STARTUP_SECONDS = 60
SHUTDOWN_SECONDS = 90  # the Supervisor gives a training worker time to checkpoint


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


@pytest.fixture(scope="session")
def serve_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    """`serve` for servers that a whole session shares (the browser tests: a model one test
    trains is there for the next); their home is a folder of their own."""
    yield from servers(tmp_path_factory.mktemp("session-home"))
