"""Serving throughput: `tunesmith serve` against llama.cpp's `llama-server` and plain `generate`.

    python bench/serve_throughput.py          # or: make bench-serve
    python bench/serve_throughput.py --no-llama-server --concurrency 1,8   # a quicker look

The same 16 chat requests (the demo task's held-out messages, greedy, max_tokens 64) are answered
- one after another by plain transformers `model.generate` in this process, in the dtype the
  engine serves in (bf16 where the CPU computes bf16 natively, fp32 elsewhere);
- by llama.cpp's own `llama-server` (2 threads, 8 slots) on the built-in model's GGUF, the file
  tunesmith dequantises: what a CPU user would run instead. It is built once from the llama.cpp
  source vendored in the llama-cpp-python sdist and cached; without a compiler or cmake, or if
  the build fails, this baseline is skipped with the reason;
- by a live `tunesmith serve` on its slot KV cache (the default), on `--engine llamacpp` (with
  the llama-server above) and on `--engine vllm` (where `make vllm` installed it), then by one
  with TUNESMITH_FAST_DECODE=0 (transformers' own forward), for comparison;
the servers through the official `openai` SDK with streaming, at 1, 4, 8 and 16 requests in
flight. No two run at the same time. Printed: the CPU flags that decide the dtype, llama.cpp's
build and the GGUF's quantisation, then per engine and level requests/s, generated tokens/s,
p50/p95 latency, time to first token, and tokens/s against llama-server and against `generate`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve()
ORDERS = HERE.parents[1] / "src" / "tunesmith" / "tasks" / "orders"
MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 64
LLAMA_THREADS, LLAMA_SLOTS = 2, 8  # the setup: both cores, 8 parallel sequences
SLOT_CONTEXT = 512  # tokens per llama-server slot: the demo prompts are ~100, plus 64 generated
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # what decides fp32 or bf16 here


def requests(n: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in (ORDERS / "test.jsonl").read_text().splitlines()[:n]]
    return [row["messages"][:2] for row in rows]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _row(
    engine: str,
    in_flight: int,
    n: int,
    tokens: int,
    wall: float,
    latencies: list[float],
    firsts: list[float],
) -> dict:
    # as it comes: a full run takes minutes, and a level's figures should survive a later failure
    print(f"  {engine}, {in_flight} in flight: {tokens / wall:.1f} tok/s", flush=True)
    return {
        "engine": engine,
        "in_flight": in_flight,
        "requests_per_s": n / wall,
        "tokens_per_s": tokens / wall,
        "p50": quantile(latencies, 0.5),
        "p95": quantile(latencies, 0.95),
        "ttft": statistics.median(firsts),
    }


def machine() -> str:
    """The CPU model, core count and the flags that decide tunesmith's dtype and llama.cpp's
    kernels (AVX-512 and bf16 change the figures several-fold)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = {}  # "key\t: value" lines, the same for every core
    for line in info.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    marks = " ".join(f"{flag}{'+' if flag in flags else '-'}" for flag in CPU_FLAGS)
    return f"{fields.get('model name', 'unknown CPU')}, {os.cpu_count()} logical cores, {marks}"


# --- plain generate, one request at a time -------------------------------------------------------
def plain_generate(messages: list[list[dict]]) -> dict:
    """`model.generate` per request, streamed to time the first token. All torch work runs on
    tunesmith's one torch thread, as in the server: a second thread running torch makes both
    ~30% slower on two cores (models/threads.py)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    from tunesmith.models import threads
    from tunesmith.models.hardware import inference_dtype
    from tunesmith.models.loading import builtin_folder

    folder = builtin_folder(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = threads.call(
        lambda: AutoModelForCausalLM.from_pretrained(folder, dtype=inference_dtype("cpu")).eval()
    )
    latencies, firsts, tokens = [], [], 0
    started = time.perf_counter()
    for conversation in messages:
        ids = tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, return_tensors="pt"
        )
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
        t0 = time.perf_counter()

        def generate(ids=ids, streamer=streamer):
            with torch.inference_mode():
                return model.generate(
                    ids, max_new_tokens=MAX_TOKENS, do_sample=False, streamer=streamer,
                    pad_token_id=tokenizer.pad_token_id,
                )  # fmt: skip

        done = threads.submit(generate)
        first = None
        for text in streamer:
            if first is None and text:
                first = time.perf_counter() - t0
        out = done.result()
        latencies.append(time.perf_counter() - t0)
        firsts.append(first or latencies[-1])
        tokens += out.shape[1] - ids.shape[1]
    wall = time.perf_counter() - started
    return _row("plain generate, sequential", 1, len(messages), tokens, wall, latencies, firsts)


# --- the OpenAI client, the same for every server ------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    """Until the server lists its models, then one full-length request nobody measures: loading
    the model and first-call allocations are no part of any level."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0)
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            sys.exit(f"the server at {url} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            client.models.list()
            break
        except openai.APIConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
        except openai.APIStatusError:  # llama-server answers 503 while it loads the model
            time.sleep(0.3)
    client.chat.completions.create(
        model=MODEL, messages=requests(1)[0], max_tokens=MAX_TOKENS, temperature=0
    )


def served(url: str, engine: str, messages: list[list[dict]], in_flight: int) -> dict:
    """The requests, `in_flight` at a time, streamed; tokens from each stream's usage."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0, timeout=600)

    def one(conversation: list[dict]) -> tuple[int, float, float]:
        """Generated tokens, latency and time to first token of one request."""
        t0 = time.perf_counter()
        first, usage = None, None
        stream = client.chat.completions.create(
            model=MODEL, messages=conversation, max_tokens=MAX_TOKENS, temperature=0,
            stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
            usage = chunk.usage or usage
        if usage is None:
            raise RuntimeError(f"{engine} sent no usage in its stream")
        latency = time.perf_counter() - t0
        return usage.completion_tokens, latency, first or latency

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        done = list(pool.map(one, messages))  # re-raises a request's error here
    wall = time.perf_counter() - started
    tokens, latencies, firsts = (list(column) for column in zip(*done, strict=True))
    return _row(engine, in_flight, len(messages), sum(tokens), wall, latencies, firsts)


def measure(
    command: list[str], env: dict, engine: str, messages: list[list[dict]], levels: list[int]
) -> list[dict]:
    """Start a server (its log to a temp file), measure every level, stop it."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="bench-serve-", suffix=".log")[1])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in command],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(url, proc, log)
        # llama.cpp logs the CPU features its kernels use: the build's other half of the story
        for line in log.read_text().splitlines():
            if "system_info" in line:
                print(f"{engine}: {line.strip()}")
        return [served(url, engine, messages, n) for n in levels]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


# --- tunesmith serve ------------------------------------------------------------------------------
def tunesmith(
    messages: list[list[dict]],
    levels: list[int],
    fast_decode: bool,
    engine: str = "builtin",
    quantize: str | None = None,
) -> list[dict]:
    from tunesmith.settings import get_settings

    env = {
        **os.environ,
        "TUNESMITH_HOME": tempfile.mkdtemp(prefix="bench-serve-"),
        # the built-in model converted once (by the baseline), not again in each fresh home
        "TUNESMITH_MODELS_CACHE": str(get_settings().models_dir),
        "TUNESMITH_FAST_DECODE": "1" if fast_decode else "0",
        "TUNESMITH_ENGINE": engine,
    }
    if quantize:
        env["TUNESMITH_QUANTIZE"] = quantize
    cli = str(Path(sys.executable).parent / "tunesmith")
    command = [cli, "serve", "--port", "{port}", "--workers", "0", "--max-batch", "16"]
    name = "tunesmith, slot cache" if fast_decode else "tunesmith, transformers fwd"
    if engine != "builtin":  # the same max_batch: 16 sequences in the engine's own server
        name = f"tunesmith --engine {engine}"
    if quantize:
        name += f", --quantize {quantize}"
    return measure(command, env, name, messages, levels)


# --- llama.cpp's llama-server ---------------------------------------------------------------------
def build_llama_server() -> Path | None:
    """tunesmith's own llama-server (infer/llama_server.py: found, or built once and cached);
    None, with the reason printed, where it cannot be built here."""
    from tunesmith.errors import TunesmithError
    from tunesmith.infer import llama_server

    try:
        return llama_server.find() or llama_server.build()
    except TunesmithError as exc:
        print(f"llama-server baseline skipped: {exc.message}\n")
        return None


def gguf_quantisation(path: Path) -> str:
    """The GGUF's file type as llama.cpp names it (MOSTLY_Q4_1: Q4_1 with a few tensors kept
    wider), from its metadata."""
    import gguf

    field = gguf.GGUFReader(path).fields["general.file_type"]
    return gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name


def llama_server_run(binary: Path, messages: list[list[dict]], levels: list[int]) -> list[dict]:
    from tunesmith.infer import llama_server
    from tunesmith.models.catalog import BUILTINS
    from tunesmith.models.loading import package_folder

    builtin = BUILTINS[MODEL]
    model = package_folder(builtin.package) / builtin.gguf_file
    version = subprocess.run([binary, "--version"], capture_output=True, text=True)
    build = " ".join((version.stdout + version.stderr).split())
    print(f"llama.cpp: {build}; {model.name}: {gguf_quantisation(model)}")
    command = [
        str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", "{port}",
        "-t", str(LLAMA_THREADS), "-np", str(LLAMA_SLOTS), "-c", str(LLAMA_SLOTS * SLOT_CONTEXT),
        *llama_server.cpu_args(),
    ]  # fmt: skip
    return measure(command, dict(os.environ), "llama-server", messages, levels)


# --- the table ------------------------------------------------------------------------------------
def print_table(base: dict, rows: list[dict]) -> None:
    """One Markdown table (pastes into the README): each engine at each level, with tokens/s
    against llama-server at the same level and against sequential `generate`."""
    llama = {r["in_flight"]: r for r in rows if r["engine"] == "llama-server"}
    columns = ["engine", "in flight", "req/s", "tok/s", "p50 s", "p95 s", "TTFT s"]
    columns += ["tok/s vs llama-server", "tok/s vs generate"]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for row in [base, *sorted(rows, key=lambda r: r["in_flight"])]:
        ref = llama.get(row["in_flight"])
        vs_llama = f"{row['tokens_per_s'] / ref['tokens_per_s']:.2f}x" if ref else "-"
        print(
            f"| {row['engine']} | {row['in_flight']} | {row['requests_per_s']:.2f} | "
            f"{row['tokens_per_s']:.1f} | {row['p50']:.2f} | {row['p95']:.2f} | "
            f"{row['ttft']:.2f} | {vs_llama} | {row['tokens_per_s'] / base['tokens_per_s']:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--no-llama-server", action="store_true", help="skip that baseline")
    parser.add_argument(
        "--no-transformers", action="store_true", help="skip TUNESMITH_FAST_DECODE=0's server"
    )
    parser.add_argument("--no-vllm", action="store_true", help="skip --engine vllm")
    parser.add_argument(
        "--quantize",
        default="",
        help="also the builtin engine with these --quantize choices, e.g. int4 or int8,int4",
    )
    args = parser.parse_args()
    messages = requests(args.requests)
    levels = [int(c) for c in args.concurrency.split(",")]

    import torch

    from tunesmith.infer import vllm_server
    from tunesmith.models.hardware import inference_dtype

    print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"tunesmith serves in {inference_dtype('cpu')}; {len(messages)} requests, greedy, "
          f"max_tokens {MAX_TOKENS}, at {', '.join(map(str, levels))} in flight")  # fmt: skip
    binary = None if args.no_llama_server else build_llama_server()
    base = plain_generate(messages)
    rows = llama_server_run(binary, messages, levels) if binary else []
    rows += tunesmith(messages, levels, fast_decode=True)
    for quantize in filter(None, args.quantize.split(",")):
        rows += tunesmith(messages, levels, fast_decode=True, quantize=quantize)
    if binary:
        rows += tunesmith(messages, levels, fast_decode=True, engine="llamacpp")
    if vllm_server.find() is not None and not args.no_vllm:  # `make vllm`
        rows += tunesmith(messages, levels, fast_decode=True, engine="vllm")
    if not args.no_transformers:
        rows += tunesmith(messages, levels, fast_decode=False)
    print()
    print_table(base, rows)


if __name__ == "__main__":
    main()
