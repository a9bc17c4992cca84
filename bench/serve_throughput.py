"""Serving throughput: `tunesmith serve` under N concurrent chat requests vs plain `generate`.

    python bench/serve_throughput.py          # or: make bench-serve

The same 16 chat requests (the demo task's held-out messages, greedy, max_tokens 64) are answered
(a) one after another by plain transformers `model.generate` in this process (bf16 weights where
the CPU computes bf16 natively, as the engine loads them), and (b) by a live `tunesmith serve`
through the official `openai` SDK with streaming, at 1, 4, 8 and 16 requests in flight. The two
never run at the same time. Printed: requests/s, generated tokens/s, p50/p95 latency and time to
first token, and the ratios against the baseline.
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
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ORDERS = HERE.parents[1] / "src" / "tunesmith" / "tasks" / "orders"
MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 64


def requests(n: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in (ORDERS / "test.jsonl").read_text().splitlines()[:n]]
    return [row["messages"][:2] for row in rows]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- (a) plain generate, one request at a time -------------------------------------------------------
def baseline(messages: list[list[dict]]) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    from tunesmith.models.hardware import inference_dtype
    from tunesmith.models.loading import builtin_folder

    folder = builtin_folder(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=inference_dtype("cpu")).eval()
    latencies, firsts, tokens = [], [], 0
    started = time.perf_counter()
    for conversation in messages:
        ids = tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, return_tensors="pt"
        )
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
        t0 = time.perf_counter()
        out: dict = {}

        def generate(ids=ids, streamer=streamer, out=out) -> None:
            with torch.inference_mode():
                out["ids"] = model.generate(
                    ids, max_new_tokens=MAX_TOKENS, do_sample=False, streamer=streamer,
                    pad_token_id=tokenizer.pad_token_id,
                )  # fmt: skip

        thread = threading.Thread(target=generate)
        thread.start()
        first = None
        for text in streamer:
            if first is None and text:
                first = time.perf_counter() - t0
        thread.join()
        latencies.append(time.perf_counter() - t0)
        firsts.append(first or latencies[-1])
        tokens += out["ids"].shape[1] - ids.shape[1]
    wall = time.perf_counter() - started
    return _row("plain generate, sequential", len(messages), tokens, wall, latencies, firsts)


def _row(
    name: str, n: int, tokens: int, wall: float, latencies: list[float], firsts: list[float]
) -> dict:
    return {
        "name": name,
        "requests_per_s": n / wall,
        "tokens_per_s": tokens / wall,
        "p50": quantile(latencies, 0.5),
        "p95": quantile(latencies, 0.95),
        "ttft": statistics.median(firsts),
    }


# --- (b) tunesmith serve ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "TUNESMITH_HOME": str(home)}
    cli = str(Path(sys.executable).parent / "tunesmith")
    proc = subprocess.Popen(
        [cli, "serve", "--port", str(port), "--workers", "0", "--max-batch", "16"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    import openai

    client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0)
    deadline = time.monotonic() + 120
    while True:
        try:
            client.models.list()
            break
        except openai.APIConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    # Warm up: the model loads on the first request, which no measurement should pay for.
    client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    return proc, url


def served(url: str, messages: list[list[dict]], concurrency: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0, timeout=600)
    todo = list(enumerate(messages))
    lock = threading.Lock()
    latencies, firsts, tokens = [], [], [0]

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                _, conversation = todo.pop(0)
            t0 = time.perf_counter()
            first = None
            stream = client.chat.completions.create(
                model=MODEL, messages=conversation, max_tokens=MAX_TOKENS, temperature=0,
                stream=True, stream_options={"include_usage": True},
            )  # fmt: skip
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter() - t0
                if chunk.usage:
                    with lock:
                        tokens[0] += chunk.usage.completion_tokens
            with lock:
                latencies.append(time.perf_counter() - t0)
                firsts.append(first or latencies[-1])

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return _row(
        f"tunesmith serve, {concurrency} in flight",
        len(messages),
        tokens[0],
        wall,
        latencies,
        firsts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--concurrency", default="1,4,8,16")
    args = parser.parse_args()
    messages = requests(args.requests)
    levels = [int(c) for c in args.concurrency.split(",")]

    import torch

    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}; {len(messages)} requests, "
          f"greedy, max_tokens {MAX_TOKENS}\n")  # fmt: skip
    base = baseline(messages)
    home = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    proc, url = start_server(home)
    try:
        rows = [served(url, messages, n) for n in levels]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    print(
        f"{'':34} {'req/s':>7} {'tok/s':>7} {'p50 s':>7} {'p95 s':>7} {'TTFT s':>7} {'tok/s ratio':>12}"
    )
    for row in [base, *rows]:
        print(
            f"{row['name']:34} {row['requests_per_s']:7.2f} {row['tokens_per_s']:7.1f} "
            f"{row['p50']:7.2f} {row['p95']:7.2f} {row['ttft']:7.2f} "
            f"{row['tokens_per_s'] / base['tokens_per_s']:11.2f}x"
        )
    one = next((r for r in rows if r["name"].endswith(" 1 in flight")), None)
    if one:
        print(
            f"\nlatency at 1 request: {one['p50'] / base['p50']:.2f}x plain generate's (goal: 1.2x or less)"
        )
    eight = next((r for r in rows if r["name"].endswith(" 8 in flight")), None)
    if eight:
        print(
            f"tokens/s at 8 in flight: {eight['tokens_per_s'] / base['tokens_per_s']:.2f}x the sequential baseline (goal: 4x or more)"
        )


if __name__ == "__main__":
    main()
