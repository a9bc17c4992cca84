"""The llamacpp engine: infer/engine.py's front (submit, stream, wait, limits) with the decoding
done by llama.cpp's own `llama-server`, one process per base model.

What runs where: tunesmith keeps everything above the engine (the API, the chat template, stop
strings, guided decoding's checks, usage, logprobs' shape) and sends llama-server token ids, never
text, so the prompt is exactly the builtin engine's. llama-server decodes with continuous batching
over `max_batch` slots. A base model is served from a GGUF: a `.gguf` model's own file, any
other (the built-in one included) written once by export's writer, in tunesmith's serving dtype,
into the models cache (see `base_gguf`). A fine-tuned adapter is written once as a GGUF LoRA
and chosen per request (`lora`: its id at scale 1, the others at 0); llama-server loads adapters
only at start, so a new one starts a new process and the old one finishes what it was answering,
then stops.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import http.client
import json
import logging
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.infer import llama_server
from tunesmith.infer.engine import EngineFront, Limits, Run, stop_ids_of
from tunesmith.infer.generation import Generation
from tunesmith.infer.sampling import SamplingParams, TokenLogprob
from tunesmith.models.spec import ModelSpec

log = logging.getLogger(__name__)

START_SECONDS = 120  # a server that does not answer /health by then failed to start
SLOT_TOKENS = 1024  # the shared KV cache holds at least this much per slot (--kv-unified)


class LlamaServer:
    """One llama-server process: a base GGUF, a fixed list of GGUF LoRAs, `slots` sequences."""

    def __init__(
        self, gguf: Path, adapters: list[Path], slots: int, context: int, logs: Path
    ) -> None:
        # Never built here: a request would wait minutes for the compiler, holding the engine's
        # lock; `serve --engine llamacpp` refuses to start without one.
        binary = llama_server.require()
        self.adapters = len(adapters)  # the `lora` list of a request to this process
        self.port = _free_port()
        self.in_flight = 0
        self.retired = False
        self._lock = threading.Lock()
        command = [
            str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(self.port),
            "-t", str(os.cpu_count() or 1), "-np", str(slots), "--kv-unified",
            "-c", str(max(context, slots * SLOT_TOKENS)), "--no-webui",
            *llama_server.cpu_args(),
        ]  # fmt: skip
        for adapter in adapters:
            command += ["--lora", str(adapter)]
        if adapters:
            command.append("--lora-init-without-apply")  # scales are set per request
        logs.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = logs
        with logs.open("wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise TunesmithError(
                    f"llama-server exited ({self.proc.returncode}) while loading its model:\n"
                    f"{self.log_file.read_text(errors='replace')[-2000:]}",
                    "Serve this model with --engine builtin, or fix the cause above.",
                )
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            if time.monotonic() > deadline:
                self.stop()
                raise TunesmithError(
                    f"llama-server did not become ready in {START_SECONDS} s.",
                    f"See its log at {self.log_file}.",
                )
            time.sleep(0.1)

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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Base:
    """One base model: its GGUF, tokenizer, limits, adapters, and the server answering for it."""

    gguf: Path
    tokenizer: object
    stop_ids: set[int]
    limits: Limits
    adapters: dict[str, Path] = field(default_factory=dict)  # adapter folder -> its GGUF LoRA
    server: LlamaServer | None = None


class LlamaCppEngine(EngineFront):
    """Thread-safe: `submit` from any thread, `submit_async` from a coroutine. Each request is
    one streamed HTTP call to llama-server, read on a thread of its own; the model's lookups and
    conversions run off the event loop."""

    def __init__(self, max_batch: int = 16) -> None:
        self.max_batch = max_batch
        self._bases: dict[str, Base] = {}
        self._lock = threading.Lock()  # guards _bases and each base's server and adapters
        self._closed = False
        # llama-server processes outlive a tunesmith that exits without closing its engine (a
        # SIGKILL still orphans them: PR_SET_PDEATHSIG follows the thread that started one, and
        # requests start them from passing threads)
        atexit.register(self.close)

    # --- models ----------------------------------------------------------------------------------
    def _base(self, spec: ModelSpec) -> Base:
        from tunesmith.models.loading import load_tokenizer, weights_folder

        key = spec.weights
        if key not in self._bases:
            tokenizer = load_tokenizer(spec)
            gguf = base_gguf(spec)
            config = _config(weights_folder(spec))
            context = int(config.get("max_position_embeddings") or 2048)
            vocab = min(int(config.get("vocab_size") or len(tokenizer)), len(tokenizer))
            eos = config.get("eos_token_id")
            self._bases[key] = Base(
                gguf, tokenizer, stop_ids_of(tokenizer, eos), Limits(context, vocab)
            )
        return self._bases[key]

    def _server(self, spec: ModelSpec) -> tuple[Base, LlamaServer, int | None]:
        """The running server for `spec`'s base, with its adapter among the loaded ones (a new
        adapter starts a new server), and that adapter's index in llama-server's list."""
        with self._lock:
            if self._closed:
                raise TunesmithError("The engine was closed before this request started.")
            base = self._base(spec)
            folder = str(spec.adapter) if spec.adapter is not None else None
            if folder is not None and folder not in base.adapters:
                base.adapters[folder] = lora_gguf(spec)
                if base.server is not None:
                    base.server.retire()
                    base.server = None
            if base.server is None:
                base.server = LlamaServer(
                    base.gguf,
                    list(base.adapters.values()),
                    self.max_batch,
                    base.limits.context,
                    _models_cache() / "llamacpp" / "logs" / f"{base.gguf.stem}.log",
                )
            index = list(base.adapters).index(folder) if folder is not None else None
            return base, base.server, index

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
            body = request_body(ids, params, adapter, server.adapters)
            threading.Thread(
                target=_decode, args=(server, seq, body), name="llamacpp-request", daemon=True
            ).start()
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


# --- one request ---------------------------------------------------------------------------------
def request_body(
    prompt_ids: list[int], params: SamplingParams, adapter: int | None, adapters: int
) -> dict:
    """llama-server's /completion request for OpenAI's settings. Its own samplers that OpenAI
    lacks (top-k 40, min-p 0.05, the repeat penalty) are off, and temperature comes before
    top-p, as OpenAI and the builtin engine apply them."""
    body: dict = {
        "prompt": prompt_ids,
        "n_predict": params.max_tokens,
        "stream": True,
        "return_tokens": True,
        "cache_prompt": True,  # a slot keeps its prompt's KV: a shared prefix is not recomputed
        "temperature": 0.0 if params.greedy else params.temperature,
        "top_p": params.top_p,
        "top_k": 0,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_penalty": 1.0,
        # OpenAI's penalties count the answer's tokens; llama.cpp's the last n of prompt and
        # answer together: n = the answer's length counts all of it, and a little prompt early on
        "repeat_last_n": params.max_tokens,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "samplers": ["penalties", "temperature", "top_p"],
        "logit_bias": [[token, bias] for token, bias in params.logit_bias.items()],
    }
    if params.seed is not None:
        body["seed"] = params.seed % 2**32  # llama.cpp's seeds are 32-bit
    if params.logprobs:
        body["n_probs"] = max(params.top_logprobs, 1)
    if params.guide == "json":
        body["json_schema"] = {"type": "object"}
    elif params.guide == "tool_call":
        body["grammar"] = tool_call_grammar(params.tools, params.tool_named)
    if adapters:
        body["lora"] = [{"id": i, "scale": 1.0 if i == adapter else 0.0} for i in range(adapters)]
    return body


def _decode(server: LlamaServer, seq: Generation, body: dict) -> None:
    """Stream one request's tokens into its Generation, which applies stop strings, the token
    limit and the guide's end exactly as on the builtin engine; closing the connection early
    (the answer is done, or its client left) makes llama-server drop the task."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    try:
        conn.request("POST", "/completion", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            raise TunesmithError(
                f"llama-server refused the request ({response.status}): "
                f"{response.read(2000).decode(errors='replace')}"
            )
        for line in response:
            if seq.done:
                return
            if not line.startswith(b"data: "):
                continue
            chunk = json.loads(line[6:])
            probs = chunk.get("completion_probabilities") or []
            for i, token in enumerate(chunk.get("tokens") or []):
                seq.accept(token, _logprob(probs[i]) if i < len(probs) else None)
                if seq.done:
                    return
            if chunk.get("stop"):
                seq.finish("length" if chunk.get("stop_type") == "limit" else "stop")
                return
        if not seq.done:
            raise TunesmithError("llama-server closed the stream before the answer ended.")
    except Exception as exc:  # the request's own failure: its stream errors, the others go on
        if not seq.done:
            seq.fail(exc)
    finally:
        conn.close()
        server.release()


def _logprob(entry: dict) -> TokenLogprob:
    top = [(t["id"], float(t["logprob"])) for t in entry.get("top_logprobs", [])]
    return TokenLogprob(int(entry["id"]), float(entry["logprob"]), top)


def tool_call_grammar(functions: dict[str, tuple[str, ...] | None], named: str | None) -> str:
    """GBNF for what ToolCallGuide allows after the forced `<tool_call>{"name": "`: one of the
    names, then an object of that function's declared parameters, each at most once (in their
    declared order: a subset of what the guide allows, so the guide accepts every token), or any
    keys where it declares none; with `named`, the name is forced already and only the object
    follows."""
    after_name = '", "arguments": '
    rules, heads = [], []
    for i, (name, keys) in enumerate(functions.items()):
        rules.append(f'args{i} ::= "{{" ws {_members(f"f{i}", keys, rules)} ws "}}"')
        if named is None:
            heads.append(f"{_literal(name + after_name)} args{i}")
        elif name == named:
            heads.append(f"args{i}")
    return "\n".join([f"root ::= {' | '.join(heads)}", *rules, JSON_RULES])


def _members(prefix: str, keys: tuple[str, ...] | None, rules: list[str]) -> str:
    """The inside of an object (a GBNF expression; rules it needs appended to `rules`): with
    `keys`, any of them in order, each at most once; without, any string keys."""
    if not keys:
        return '( string ws ":" ws value ( ws "," ws string ws ":" ws value )* )?'
    members = []
    for j, key in enumerate(keys):
        rules.append(f'{prefix}k{j} ::= {_literal(json.dumps(key))} ws ":" ws value')
        members.append(f"{prefix}k{j}")
    # from key j on: key j then any of the later ones (each after a comma), or start later
    firsts = []
    for j in range(len(members)):
        later = " ".join(f'( ws "," ws {m} )?' for m in members[j + 1 :])
        firsts.append(f"{members[j]} {later}".strip())
    return f"( {' | '.join(firsts)} )?"


def _literal(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid GBNF string literal


JSON_RULES = r"""value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( string ws ":" ws value ( ws "," ws string ws ":" ws value )* )? ws "}"
array ::= "[" ws ( value ( ws "," ws value )* )? ws "]"
string ::= "\"" ( [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
ws ::= [ \t\n]{0,32}"""


# --- the files llama-server reads ----------------------------------------------------------------
def base_gguf(spec: ModelSpec) -> Path:
    """The GGUF to serve `spec`'s base weights from: a `.gguf` model's own file, else the weights
    tunesmith serves (the built-in model's dequantised copy included) in tunesmith's serving
    dtype, written once. The weights the builtin engine serves, not the built-in Q4_1 file:
    llama.cpp's Q4 kernels also round the activations to 8 bits, and without repacking (see
    llama_server.cpu_args) they decoded 8 prompts x 32 tokens 1.8x slower than bf16 here."""
    from tunesmith.models.loading import weights_folder

    if spec.weights.endswith(".gguf"):
        return Path(spec.weights)
    folder = Path(weights_folder(spec))
    if not folder.is_dir():
        raise TunesmithError(
            f"The llamacpp engine serves local models; {spec.name} is not on this disk.",
            "Download it first, or serve it with --engine builtin.",
            param="model",
        )
    return _converted(folder, "base", lambda out: _write_base(folder, out))


def lora_gguf(spec: ModelSpec) -> Path:
    """`spec`'s adapter as a GGUF LoRA, written once."""
    from tunesmith.export.gguf_lora import write_gguf_lora
    from tunesmith.models.loading import weights_folder

    assert spec.adapter is not None
    adapter, base = Path(spec.adapter), Path(weights_folder(spec))
    return _converted(adapter, "lora", lambda out: write_gguf_lora(adapter, base, out))


def _write_base(folder: Path, out: Path) -> None:
    from tunesmith.export.gguf import write_gguf
    from tunesmith.models.hardware import cpu_has_bf16

    write_gguf(folder, out, quant="bf16" if cpu_has_bf16() else "f16")


def _converted(source: Path, kind: str, write) -> Path:
    """The cached conversion of `source`, keyed by its path and its files' sizes and times (a
    model written again is converted again). The GGUF writers write through atomic_file, so a
    conversion cut short leaves no file under the cached name."""
    stamp = "".join(
        f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns};" for p in sorted(source.iterdir())
    )
    key = hashlib.sha256(f"{source}|{stamp}".encode()).hexdigest()[:16]
    target = _models_cache() / "llamacpp" / f"{source.name}-{kind}-{key}.gguf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        log.warning("Writing %s as a GGUF for llama-server, once", source)
        write(target)
    return target


def _config(folder: str) -> dict:
    path = Path(folder) / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _models_cache() -> Path:
    from tunesmith.settings import get_settings

    return get_settings().models_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
