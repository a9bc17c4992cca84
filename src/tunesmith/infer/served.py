"""Engines whose decoding runs in a model server they start and talk to over loopback HTTP:
llama.cpp's `llama-server` (infer/llamacpp.py) and vLLM's OpenAI server (infer/vllm.py).

What runs where: tunesmith keeps everything above the engine (the API, the chat template, stop
strings, guided decoding's checks, usage, logprobs' shape) and sends the server token ids, never
text, so the prompt is exactly the builtin engine's. The server batches and decodes. The engines
differ in the command that starts their server, how a fine-tuned adapter reaches it, the request
body and how a streamed chunk names its tokens; the rest (one server per base model on a port of
its own, /health, retiring a process once its requests are done, one reader thread per request
that stops the server's work by closing the connection) is here once.
"""

from __future__ import annotations

import asyncio
import atexit
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tunesmith.errors import TunesmithError
from tunesmith.infer.engine import EngineFront, Limits, Run, stop_ids_of
from tunesmith.infer.generation import Generation
from tunesmith.infer.sampling import SamplingParams, TokenLogprob
from tunesmith.models.spec import ModelSpec

# what one streamed chunk holds: its tokens (id, log-prob when asked) and the finish reason
# ("stop", "length") when it is the last
Chunk = tuple[list[tuple[int, TokenLogprob | None]], str | None]


class ServerProcess:
    """One model server: a process started on a free loopback port (`start`), ready once GET
    /health answers 200, or one already running at a URL (`attach`), which is never stopped
    from here. `acquire`/`release` count the requests it is answering, so that a retired one
    stops after its last."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        proc: subprocess.Popen | None = None,
        log_file: Path | None = None,
        adapters: list[str] | None = None,
    ) -> None:
        self.name = name
        self.host, self.port = host, port
        self.proc, self.log_file = proc, log_file
        # the adapters it serves, in its own order: llama-server's fixed `--lora` list; vLLM's
        # grows as adapters are loaded into it
        self.adapters = list(adapters or [])
        self.model = ""  # what it calls its base model, where requests name one (vLLM)
        self.in_flight = 0
        self.retired = False
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls,
        name: str,
        command: Callable[[int], list[str]],
        logs: Path,
        start_seconds: float,
        env: dict[str, str] | None = None,
        adapters: list[str] | None = None,
    ) -> ServerProcess:
        """Run `command(port)` and wait until it answers."""
        port = free_port()
        logs.parent.mkdir(parents=True, exist_ok=True)
        with logs.open("wb") as out:
            proc = _LAUNCHER.submit(_launch, command(port), out, {**os.environ, **(env or {})})
            proc = proc.result()
        server = cls(name, "127.0.0.1", port, proc, logs, adapters)
        server._wait_ready(start_seconds)
        return server

    @classmethod
    def attach(cls, name: str, url: str) -> ServerProcess:
        """A server someone else runs, at `url` (http://host:port)."""
        parsed = urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname or parsed.path not in ("", "/"):
            raise TunesmithError(
                f"{url!r} is not a server's address.", "Give one as http://host:port."
            )
        return cls(name, parsed.hostname, parsed.port or 80)

    def _wait_ready(self, start_seconds: float) -> None:
        assert self.proc is not None and self.log_file is not None
        deadline = time.monotonic() + start_seconds
        while True:
            if self.proc.poll() is not None:
                raise TunesmithError(
                    f"{self.name} exited ({self.proc.returncode}) while loading its model:\n"
                    f"{self.log_file.read_text(errors='replace')[-2000:]}",
                    "Serve this model with --engine builtin, or fix the cause above.",
                )
            try:
                if self.get("/health", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TunesmithError(
                    f"{self.name} did not become ready in {start_seconds:.0f} s.",
                    f"See its log at {self.log_file}.",
                )
            time.sleep(0.2)

    def connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        return self._request("GET", path, None, timeout)

    def post(self, path: str, body: dict, timeout: float | None = None) -> tuple[int, bytes]:
        """One plain (not streamed) JSON request: its status and body."""
        return self._request("POST", path, body, timeout)

    def _request(
        self, method: str, path: str, body: dict | None, timeout: float | None
    ) -> tuple[int, bytes]:
        conn = self.connection(timeout)
        try:
            if body is None:
                conn.request(method, path)
            else:
                conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def acquire(self) -> bool:
        """Count a request in; False once the server is retired (the caller takes the new one)."""
        with self._lock:
            if self.retired:
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
            last = self.retired and self.in_flight == 0
        if last:
            self.stop()

    def retire(self) -> None:
        """Take no new requests; stop once the ones it is answering are done."""
        with self._lock:
            self.retired = True
            idle = self.in_flight == 0
        if idle:
            self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Base:
    """One base model: what its server loads, its tokenizer, limits, adapters, and the server
    answering for it."""

    weights: Path
    tokenizer: object
    stop_ids: set[int]
    limits: Limits
    adapters: dict[str, str] = field(default_factory=dict)  # adapter folder -> the server's name
    server: ServerProcess | None = None


class ServedEngine(EngineFront):
    """Thread-safe: `submit` from any thread, `submit_async` from a coroutine. Each request is
    one streamed HTTP call to the base model's server, read on a thread of its own; the model's
    lookups, conversions and server starts run off the event loop."""

    PATH: str  # the server's streamed completion route

    def __init__(self, max_batch: int = 16) -> None:
        self.max_batch = max_batch
        self._bases: dict[str, Base] = {}
        self._lock = threading.Lock()  # guards _bases and each base's server and adapters
        self._closed = False
        # a tunesmith that exits without closing its engine stops its servers here (a killed one
        # through _launch's death signal)
        atexit.register(self.close)

    # --- what each engine says -------------------------------------------------------------------
    @abstractmethod
    def _weights(self, spec: ModelSpec) -> Path:
        """What the server loads for `spec`'s base model."""

    @abstractmethod
    def _start(self, base: Base) -> ServerProcess:
        """A server for `base`, with the adapters it needs at start."""

    @abstractmethod
    def _adapter(self, base: Base, spec: ModelSpec) -> str:
        """Register `spec`'s adapter with `base` (once); its name on the server. May retire
        `base.server` where a server cannot take a new adapter while it runs."""

    def _load(self, server: ServerProcess, folder: str, name: str) -> None:
        """Make `server` serve adapter `name` (from `folder`) if it does not yet."""

    @abstractmethod
    def _body(
        self, base: Base, server: ServerProcess, ids: list[int], params: SamplingParams,
        adapter: str | None,
    ) -> dict:  # fmt: skip
        """The streamed request for one prompt, on adapter `adapter` (None: the base model)."""

    @staticmethod
    @abstractmethod
    def _read(chunk: dict) -> Chunk:
        """The tokens and finish of one streamed chunk."""

    # --- models ----------------------------------------------------------------------------------
    def _base(self, spec: ModelSpec) -> Base:
        from tunesmith.models.loading import load_tokenizer, weights_folder

        key = spec.weights
        if key not in self._bases:
            tokenizer = load_tokenizer(spec)
            weights = self._weights(spec)
            config = _config(weights_folder(spec))
            context = int(config.get("max_position_embeddings") or 2048)
            vocab = min(int(config.get("vocab_size") or len(tokenizer)), len(tokenizer))
            eos = config.get("eos_token_id")
            self._bases[key] = Base(
                weights, tokenizer, stop_ids_of(tokenizer, eos), Limits(context, vocab)
            )
        return self._bases[key]

    def _server(self, spec: ModelSpec) -> tuple[Base, ServerProcess, str | None]:
        """The running server for `spec`'s base, serving its adapter, and that adapter's name."""
        with self._lock:
            if self._closed:
                raise TunesmithError("The engine was closed before this request started.")
            base = self._base(spec)
            adapter = self._adapter(base, spec) if spec.adapter is not None else None
            if base.server is None:
                base.server = self._start(base)
            if adapter is not None:
                self._load(base.server, str(spec.adapter), adapter)
            return base, base.server, adapter

    def limits(self, spec: ModelSpec) -> Limits:
        with self._lock:
            return self._base(spec).limits

    def warm(self, spec: ModelSpec) -> None:
        """Start `spec`'s server now (conversions included), not on its first request."""
        self._server(spec)

    # --- requests --------------------------------------------------------------------------------
    def submit(self, spec: ModelSpec, prompt_ids: list[int], params: SamplingParams) -> Generation:
        return self._enqueue(spec, [(prompt_ids, params)], None)[0]

    async def submit_async(self, spec: ModelSpec, runs: list[Run]) -> list[Generation]:
        loop = asyncio.get_running_loop()
        return await asyncio.to_thread(self._enqueue, spec, runs, loop)

    def _enqueue(
        self, spec: ModelSpec, runs: list[Run], loop: asyncio.AbstractEventLoop | None
    ) -> list[Generation]:
        if any(not ids for ids, _ in runs):
            raise TunesmithError("A prompt needs at least one token.", param="prompt")
        while True:
            base, server, adapter = self._server(spec)
            taken = [server.acquire() for _ in runs]
            if all(taken):
                break
            for _ in filter(None, taken):  # retired meanwhile: give back, take the new one
                server.release()
        seqs = []
        for ids, params in runs:
            seq = Generation(ids, params, None, base.tokenizer, base.stop_ids, loop)
            body = self._body(base, server, ids, params, adapter)
            start_decoding(server, seq, self.PATH, body, self._read)
            seqs.append(seq)
        return seqs

    def close(self, timeout: float = 30.0) -> None:
        atexit.unregister(self.close)
        with self._lock:
            self._closed = True
            for base in self._bases.values():
                if base.server is not None:
                    base.server.stop()
                    base.server = None


# On Linux a server dies with the tunesmith that started it, by SIGKILL too: the wrapper asks
# for SIGTERM when its parent goes (PR_SET_PDEATHSIG, kept across exec), then execs the server.
# The kernel sends it when the *thread* that started the child ends, so every server is started
# from one thread that lives as long as the process, not from the request or warm-up thread
# that happened to need it.
_LAUNCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="server-launcher")
DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"  # 1: PR_SET_PDEATHSIG
    "if os.getppid() != int(sys.argv[1]):\n"  # the parent ended before the line above
    "    sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def _launch(command: list[str], out, env: dict[str, str]) -> subprocess.Popen:
    if sys.platform == "linux":
        command = [sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *command]
    return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def start_decoding(
    server: ServerProcess,
    seq: Generation,
    path: str,
    body: dict,
    read: Callable[[dict], Chunk],
) -> None:
    """Read one acquired request's stream into `seq` on a thread of its own."""
    threading.Thread(
        target=_decode,
        args=(server, seq, path, body, read),
        name=f"{server.name}-request",
        daemon=True,
    ).start()


def _decode(
    server: ServerProcess, seq: Generation, path: str, body: dict, read: Callable[[dict], Chunk]
) -> None:
    """Stream one request's tokens into its Generation, which applies stop strings, the token
    limit and the guide's end exactly as on the builtin engine; closing the connection early
    (the answer is done, or its client left) makes the server drop the request."""
    conn = server.connection()
    try:
        for chunk in _events(conn, server.name, path, body):
            tokens, finish = read(chunk)
            for token, logprob in tokens:
                seq.accept(token, logprob)
                if seq.done:
                    return
            if finish is not None:
                seq.finish(finish)
                return
            if seq.done:
                return
        if not seq.done:
            raise TunesmithError(f"{server.name} closed the stream before the answer ended.")
    except Exception as exc:  # the request's own failure: its stream errors, the others go on
        if not seq.done:
            seq.fail(exc)
    finally:
        conn.close()
        server.release()


def _events(conn: http.client.HTTPConnection, name: str, path: str, body: dict) -> Iterator[dict]:
    """The JSON of each server-sent `data:` line, up to `[DONE]` or the stream's end."""
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise TunesmithError(
            f"{name} refused the request ({response.status}): "
            f"{response.read(2000).decode(errors='replace')}",
            status=upstream_status(response.status),
        )
    for line in response:
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            return
        yield json.loads(data)


def upstream_status(code: object) -> int:
    """What the API answers for a model server's failure: the client's request (400) when the
    server says so with a 4xx, else the server's own (502)."""
    return 400 if isinstance(code, int) and code < 500 else 502


def _config(folder: str) -> dict:
    path = Path(folder) / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def models_cache() -> Path:
    """Where engines keep their conversions and their servers' logs."""
    from tunesmith.settings import get_settings

    return get_settings().models_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
