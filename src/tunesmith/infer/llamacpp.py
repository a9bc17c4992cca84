"""The llamacpp engine: infer/served.py's engine with the decoding done by llama.cpp's own
`llama-server`, one process per base model, over continuous batching of `max_batch` slots.

A base model is served from a GGUF: a `.gguf` model's own file, any other (the built-in one
included) written once by export's writer, in tunesmith's serving dtype, into the models cache
(see `base_gguf`). A fine-tuned adapter is written once as a GGUF LoRA and chosen per request
(`lora`: its id at scale 1, the others at 0); llama-server loads adapters only at start, so a new
one starts a new process and the old one finishes what it was answering, then stops.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.infer import llama_server
from tunesmith.infer.gbnf import tool_call_grammar
from tunesmith.infer.sampling import SamplingParams, TokenLogprob
from tunesmith.infer.served import Base, Chunk, ServedEngine, ServerProcess, models_cache
from tunesmith.models.spec import ModelSpec

log = logging.getLogger(__name__)

START_SECONDS = 120  # a server that does not answer /health by then failed to start
SLOT_TOKENS = 1024  # the shared KV cache holds at least this much per slot (--kv-unified)


def llama_server_process(
    gguf: Path, adapters: list[Path], slots: int, context: int, logs: Path
) -> ServerProcess:
    """One llama-server process: a base GGUF, a fixed list of GGUF LoRAs, `slots` sequences."""
    # Never built here: a request would wait minutes for the compiler, holding the engine's
    # lock; `serve --engine llamacpp` refuses to start without one.
    binary = llama_server.require()

    def command(port: int) -> list[str]:
        line = [
            str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port),
            "-t", str(os.cpu_count() or 1), "-np", str(slots), "--kv-unified",
            "-c", str(max(context, slots * SLOT_TOKENS)), "--no-webui",
            *llama_server.cpu_args(),
        ]  # fmt: skip
        for adapter in adapters:
            line += ["--lora", str(adapter)]
        if adapters:
            line.append("--lora-init-without-apply")  # scales are set per request
        return line

    return ServerProcess.start(
        "llama-server", command, logs, START_SECONDS, adapters=[str(a) for a in adapters]
    )


class LlamaCppEngine(ServedEngine):
    """One llama-server per base model, serving it from a GGUF with every adapter asked for so far
    as a GGUF LoRA, chosen per request by its `lora` scales."""

    PATH = "/completion"

    def _weights(self, spec: ModelSpec) -> Path:
        return base_gguf(spec)

    def _start(self, base: Base) -> ServerProcess:
        return llama_server_process(
            base.weights,
            [Path(gguf) for gguf in base.adapters.values()],
            self.max_batch,
            base.limits.context,
            models_cache() / "llamacpp" / "logs" / f"{base.weights.stem}.log",
        )

    def _adapter(self, base: Base, spec: ModelSpec) -> str:
        """llama-server loads adapters only at start: a new one retires the running server (it
        finishes what it is answering) and the next request starts one with all of them."""
        folder = str(spec.adapter)
        if folder not in base.adapters:
            base.adapters[folder] = str(lora_gguf(spec))
            if base.server is not None:
                base.server.retire()
                base.server = None
        return base.adapters[folder]

    def _body(
        self, base: Base, server: ServerProcess, ids: list[int], params: SamplingParams,
        adapter: str | None,
    ) -> dict:  # fmt: skip
        # the request's `lora` list is the list of the process it goes to
        index = server.adapters.index(adapter) if adapter is not None else None
        return request_body(ids, params, index, len(server.adapters))

    @staticmethod
    def _read(chunk: dict) -> Chunk:
        return read_chunk(chunk)


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


def read_chunk(chunk: dict) -> Chunk:
    """The tokens of one of llama-server's streamed chunks (`return_tokens`), and its finish."""
    probs = chunk.get("completion_probabilities") or []
    tokens = [
        (token, _logprob(probs[i]) if i < len(probs) else None)
        for i, token in enumerate(chunk.get("tokens") or [])
    ]
    finish = None
    if chunk.get("stop"):
        finish = "length" if chunk.get("stop_type") == "limit" else "stop"
    return tokens, finish


def _logprob(entry: dict) -> TokenLogprob:
    top = [(t["id"], float(t["logprob"])) for t in entry.get("top_logprobs", [])]
    return TokenLogprob(int(entry["id"]), float(entry["logprob"]), top)


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
    target = models_cache() / "llamacpp" / f"{source.name}-{kind}-{key}.gguf"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        log.warning("Writing %s as a GGUF for llama-server, once", source)
        write(target)
    return target
