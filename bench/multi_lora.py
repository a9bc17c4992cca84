"""Multi-LoRA cost: a batch that mixes 4 adapters against a batch on one adapter, and on none.

    python bench/multi_lora.py                # or: make bench-lora
    python bench/multi_lora.py --rounds 1 --no-transformers   # a quicker look

The issue's goal: a batch mixing 4 different adapters costs at most 15% more than a batch on one.
Four random LoRA adapters of the built-in model (r=16, all linear layers, B initialised non-zero
so each really changes the output; seeds 1 to 4) are saved to a temp folder. The engine
(`tunesmith.infer.engine.Engine`, in this process: no HTTP, so only decoding is measured)
answers 8 of the demo task's chat requests, all 8 queued together so they form one batch,
greedy, max_tokens 64:
  (a) all 8 on one adapter, (b) 2 on each of the 4 adapters, (c) no adapter;
on the slot cache (the default decode path, adapters applied per row in batched matmuls) and with
fast_decode=False (transformers' forward through PEFT: its plain path for one adapter, its
mixed-batch forward for several), and on the engines on a model server where theirs is
installed: `--engine llamacpp` (each adapter a GGUF LoRA chosen per request by its scales) and
`--engine vllm` (vLLM's multi-LoRA). Each engine answers every setup once untimed first (the model
and the adapters load on first use), then the setups alternate for --rounds rounds, so that drift
on a shared machine hits all three; the median round is printed, with (b)/(a) in time per token.

A file of its own, not a flag of serve_throughput.py: it measures the engine, not the server, with
adapters that must be made first, and answers one question in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunesmith.infer.engine import EngineFront

HERE = Path(__file__).resolve()
ORDERS = HERE.parents[1] / "src" / "tunesmith" / "tasks" / "orders"
MODEL = "smollm2-135m-instruct"
MAX_TOKENS, IN_FLIGHT, ADAPTERS = 64, 8, 4
SETUPS = {
    "(a) 8 rows, one adapter": lambda row: 0,
    "(b) 2 rows on each of 4 adapters": lambda row: row % ADAPTERS,
    "(c) 8 rows, no adapter": lambda row: None,
}


def make_adapters(base: Path, out: Path) -> list[Path]:
    """Four random LoRA adapters (the issue's r=16 on every linear layer), one seed each."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folders = []
    for seed in range(1, ADAPTERS + 1):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        config = LoraConfig(r=16, target_modules="all-linear", init_lora_weights=False)
        folder = out / f"adapter-{seed}"
        get_peft_model(model, config).save_pretrained(folder)
        folders.append(folder)
    return folders


def one_batch(engine, specs: list, prompts: list[list[int]]) -> tuple[int, float]:
    """All requests queued at once (one batch); generated tokens and wall seconds."""
    from tunesmith.infer.sampling import SamplingParams

    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0)
    started = time.perf_counter()
    queued = [engine.submit(spec, ids, params) for spec, ids in zip(specs, prompts, strict=True)]
    tokens = sum(engine.wait(seq).completion_tokens for seq in queued)
    return tokens, time.perf_counter() - started


def engines(no_transformers: bool) -> dict[str, Callable[[], EngineFront]]:
    """The engines to measure, by label: the builtin one's two paths, and the engines on a model
    server whose server is installed here (llama-server: `make llama-server`; vLLM: `make vllm`)."""
    from tunesmith.infer import llama_server, vllm_server
    from tunesmith.infer.engine import Engine, open_engine

    made: dict[str, Callable[[], EngineFront]] = {
        "slot cache": lambda: Engine(max_batch=IN_FLIGHT, device="cpu", fast_decode=True)
    }
    if not no_transformers:
        made["transformers+PEFT"] = lambda: Engine(
            max_batch=IN_FLIGHT, device="cpu", fast_decode=False
        )
    if llama_server.find() is not None:
        made["--engine llamacpp"] = lambda: open_engine("llamacpp", IN_FLIGHT)
    if vllm_server.find() is not None:
        made["--engine vllm"] = lambda: open_engine("vllm", IN_FLIGHT)
    return made


def measure(
    make: Callable[[], EngineFront], base: Path, adapters: list[Path], rounds: int
) -> dict[str, tuple[float, float]]:
    """Per setup on one engine: tokens/s (the median of `rounds` alternating rounds) and the
    tokens each request generated on average (random adapters may end an answer early)."""
    from tunesmith.data.records import Message
    from tunesmith.data.render import encode_prompt
    from tunesmith.models.spec import ModelSpec

    def spec(adapter: int | None) -> ModelSpec:
        return ModelSpec(
            name=MODEL if adapter is None else f"adapter-{adapter}", kind="local",
            base=str(base), weights=str(base),
            adapter=None if adapter is None else adapters[adapter],
        )  # fmt: skip

    rows = [json.loads(line) for line in (ORDERS / "test.jsonl").read_text().splitlines()]
    engine = make()
    try:
        tokenizer = engine.tokenizer(spec(None))
        prompts = [
            encode_prompt(tokenizer, [Message(**m) for m in row["messages"][:2]])
            for row in rows[:IN_FLIGHT]
        ]
        batches = {
            name: [spec(pick(row)) for row in range(IN_FLIGHT)] for name, pick in SETUPS.items()
        }
        for specs in batches.values():  # untimed: loads the model and every adapter (on
            # llama-server, each new adapter restarts its process: all four are in it after this)
            one_batch(engine, specs, prompts)
        speeds: dict[str, list[float]] = {name: [] for name in SETUPS}
        lengths: dict[str, float] = {}
        for _ in range(rounds):
            for name, specs in batches.items():
                tokens, seconds = one_batch(engine, specs, prompts)
                speeds[name].append(tokens / seconds)
                lengths[name] = tokens / IN_FLIGHT  # greedy: the same in every round
    finally:
        engine.close()
    return {name: (statistics.median(speeds[name]), lengths[name]) for name in SETUPS}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-transformers", action="store_true", help="only the slot cache, not PEFT's path"
    )
    args = parser.parse_args()

    import torch

    from tunesmith.models import threads
    from tunesmith.models.hardware import inference_dtype
    from tunesmith.models.loading import builtin_folder

    base = builtin_folder(MODEL)
    out = Path(tempfile.mkdtemp(prefix="bench-lora-"))
    # on the torch thread, where the engine decodes: torch work on a second thread slows both
    adapters = threads.call(lambda: make_adapters(base, out))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, engine dtype "
          f"{inference_dtype('cpu')}; {IN_FLIGHT} requests in one batch, greedy, max_tokens "
          f"{MAX_TOKENS}, median of {args.rounds} rounds\n")  # fmt: skip
    results = {
        label: measure(make, base, adapters, args.rounds)
        for label, make in engines(args.no_transformers).items()
    }
    print("| tok/s (tokens per request) | " + " | ".join(results) + " |")
    print("|" + " --- |" * (len(results) + 1))
    for name in SETUPS:
        cells = [f"{r[name][0]:.1f} ({r[name][1]:.0f})" for r in results.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    a, b = list(SETUPS)[:2]
    costs = " | ".join(f"{r[a][0] / r[b][0]:.2f}x" for r in results.values())
    print(f"| (b) against (a), time per token (goal: 1.15x or less) | {costs} |")


if __name__ == "__main__":
    main()
