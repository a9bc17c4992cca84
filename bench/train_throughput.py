"""Training throughput: plain TRL SFTTrainer with its defaults vs the `tunesmith train` path.

    python bench/train_throughput.py            # or: make bench-train
    python bench/train_throughput.py --steps 12 --rounds 1   # a quicker look

Both train the built-in model (SmolLM2-135M-Instruct) with the same LoRA config (r=16, alpha 32, no
dropout, all linear layers), batch 8, the same number of optimizer steps, on the same mixed-length
chat data (the demo task's one-turn examples plus two- and four-turn conversations built from
them). Each run is a fresh process (peak RSS is per process), and the two alternate, round after
round, so that drift on a shared machine hits both. Printed per run: tokens/s (every token through
the model, and assistant tokens), step time, peak RSS, model FLOPs utilisation against a bf16
matmul peak measured here, and the assistant-token loss on held-out examples after training,
computed the same way for both.

MFU counts 4·N FLOPs per token for LoRA (a forward pass, and a backward pass for the inputs only:
frozen weights get no weight gradient), N = parameters in matrix products (the tied output head
included, at every position), attention scores left out. It is the *model's* FLOPs: a path that
skips work (the head at unscored positions) earns it as utilisation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ORDERS = HERE.parents[1] / "src" / "tunesmith" / "tasks" / "orders"
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"}


# --- data -------------------------------------------------------------------------------------------
def mixed_data(n_train: int, n_eval: int) -> tuple[list[dict], list[dict]]:
    """One-turn orders, and conversations of 2 and 4 orders in a row (longer examples)."""
    rows = [json.loads(line) for line in (ORDERS / "train.jsonl").read_text().splitlines()]
    rows += [json.loads(line) for line in (ORDERS / "test.jsonl").read_text().splitlines()]
    out, i = [], 0
    while len(out) < n_train + n_eval:
        turns = (1, 2, 4)[len(out) % 3]
        chunk = [rows[(i + k) % len(rows)] for k in range(turns)]
        i += turns
        messages = [chunk[0]["messages"][0]]
        for row in chunk:
            messages += row["messages"][1:]
        out.append({"messages": messages})
    return out[:n_train], out[n_train:]


# --- measuring --------------------------------------------------------------------------------------
def matmul_peak(dtype_name: str, device: str = "cpu", repeats: int = 20) -> float:
    """GFLOP/s of a square matmul on this machine, in the given dtype."""
    import torch

    size = 8192 if device == "cuda" else 2048
    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def matmul_params(model) -> int:
    """Parameters that take part in matrix products: linear layers and the output head."""
    import torch

    total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not type(module).__module__.startswith("peft"):
            total += module.weight.numel()
    return total


def eval_loss(model, tokenizer, eval_rows: list[dict]) -> float:
    """Mean assistant-token loss on held-out examples: the same measure for both paths."""
    import torch

    from tunesmith.data.packing import PaddedCollator
    from tunesmith.data.records import Conversation
    from tunesmith.data.render import encode
    from tunesmith.train.trainer import assistant_loss

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in eval_rows:
            encoded = encode(tokenizer, Conversation.model_validate(row))
            batch = PaddedCollator(tokenizer.pad_token_id)([vars(encoded)])
            batch = {k: v.to(model.device) for k, v in batch.items()}
            loss_sum, n, _ = assistant_loss(model, batch)
            total, count = total + float(loss_sum), count + int(n)
    return total / count


def assistant_tokens(ids: list[int], tokenizer) -> int:
    """Tokens of assistant turns (with their end-of-turn token) in a rendered SmolLM2 chat:
    the tokens that carry the supervision, whether or not a trainer puts its loss there."""
    header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    count, i = 0, 0
    while i < len(ids):
        if ids[i : i + len(header)] == header:
            i += len(header)
            while i < len(ids) and ids[i] != end:
                count, i = count + 1, i + 1
            count += i < len(ids)  # the end-of-turn token
        i += 1
    return count


# --- the two children -------------------------------------------------------------------------------
def bench_model_dir() -> Path:
    """The model both runs train: the built-in one, or BENCH_MODEL_DIR (see --model-dir)."""
    if os.environ.get("BENCH_MODEL_DIR"):
        return Path(os.environ["BENCH_MODEL_DIR"])
    from tunesmith.models.loading import builtin_folder

    return builtin_folder("smollm2-135m-instruct")


def peak_memory_gb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_trl(data: Path, eval_rows: list[dict], steps: int, device: str) -> dict:
    """Plain TRL: SFTTrainer with SFTConfig's defaults (bf16 autocast, gradient checkpointing,
    padding to the longest, loss on every token), only the batch, steps and LoRA fixed."""
    import torch
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    folder = bench_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    times: list[float] = []
    counts: list[tuple[int, int]] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as out:
        args = trl.SFTConfig(
            output_dir=out, per_device_train_batch_size=8, max_steps=steps, report_to=[],
            save_strategy="no", logging_steps=1, seed=0, use_cpu=device == "cpu", disable_tqdm=True,
        )  # fmt: skip
        trainer = trl.SFTTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer, peft_config=LoraConfig(**LORA, task_type="CAUSAL_LM"),
            callbacks=[Timer()],
        )  # fmt: skip
        collate = trainer.data_collator

        def counting(examples):
            batch = collate(examples)
            mask = batch.get("attention_mask")
            real = int(mask.sum()) if mask is not None else batch["input_ids"].numel()
            counts.append(
                (real, sum(assistant_tokens(ex["input_ids"], tokenizer) for ex in examples))
            )
            return batch

        trainer.data_collator = counting  # the dataloader is built in train(): it sees this
        trainer.train()
    memory = peak_memory_gb(device)  # training's peak, before the evaluation loads anything
    loss = eval_loss(trainer.model, tokenizer, eval_rows)
    return _summary(
        "TRL SFTTrainer defaults", times, counts, matmul_params(trainer.model), loss, memory
    )


def run_tunesmith(
    data: Path, eval_rows: list[dict], steps: int, device: str, qlora: bool = False
) -> dict:
    """The `tunesmith train` path: a job in a store, trained by train.run with its defaults."""
    os.environ["TUNESMITH_HOME"] = tempfile.mkdtemp(prefix="bench-home-")
    from tunesmith.jobs.service import create_job, validate_files
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.store import open_store
    from tunesmith.train.config import LoraSettings, SFTConfig
    from tunesmith.train.run import run

    store = open_store()
    file = store.files.add_path(data, "fine-tune")
    settings = json.loads(os.environ.get("BENCH_SETTINGS", "{}"))  # for trying levers by hand
    config = SFTConfig(
        model=str(bench_model_dir())
        if os.environ.get("BENCH_MODEL_DIR")
        else "smollm2-135m-instruct",
        epochs=1,
        batch_size=8,
        lora=LoraSettings(r=LORA["r"], lora_alpha=LORA["lora_alpha"]),
        device=device,
        load_in_4bit=qlora,
        **settings,
    )
    job = validate_files(store, create_job(store, config, training_file=file.id, seed=0))
    store.jobs.transition(job.id, "running", allowed_from={"queued"})
    job = run(job.id, store)
    metrics = store.events.metrics(job.id)[:steps]
    times = [m["step_seconds"] for m in metrics]
    counts = [(m["tokens"], m["scored_tokens"]) for m in metrics]
    import torch

    memory = peak_memory_gb(device)  # training's peak, before the evaluation loads anything
    spec = store.models.resolve(job.fine_tuned_model)
    model = load_model(spec, dtype=torch.float32, device=device)
    loss = eval_loss(model, load_tokenizer(spec), eval_rows)
    name = "tunesmith train (QLoRA)" if qlora else "tunesmith train"
    return _summary(name, times, counts, matmul_params(model), loss, memory)


def _summary(
    name: str,
    times: list[float],
    counts: list[tuple[int, int]],
    n_params: int,
    loss: float,
    memory_gb: float,
) -> dict:
    # The first step pays one-off costs (allocations, kernel choice): leave it out.
    times, counts = times[1:], counts[1 : len(times) + 1]
    seconds = sum(times)
    tokens = sum(c[0] for c in counts)
    return {
        "name": name,
        "steps": len(times),
        "tokens_per_s": tokens / seconds,
        "assistant_tokens_per_s": sum(c[1] for c in counts) / seconds,
        "step_s": statistics.median(times),
        "peak_rss_gb": memory_gb,
        "model_gflops_per_s": 4 * n_params * tokens / seconds / 1e9,
        "eval_loss": loss,
    }


def _with_weights(folder: Path, work: Path) -> Path:
    """The folder itself when it has weights; else a copy with random weights saved in `work`."""
    if list(folder.glob("*.safetensors")):
        return folder
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    target = work / "random-model"
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(folder).save_pretrained(target)
    return target


# --- the parent -------------------------------------------------------------------------------------
def child(args) -> None:
    eval_rows = json.loads(Path(args.eval).read_text())
    data = Path(args.data)
    if args.child == "trl":
        result = run_trl(data, eval_rows, args.steps, args.device)
    else:
        result = run_tunesmith(
            data, eval_rows, args.steps, args.device, qlora=args.child == "qlora"
        )
    Path(args.out).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per run (batch 8)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both runs")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--model-dir",
        help="train this model folder instead of the built-in one; a folder with only config.json "
        "and the tokenizer gets random weights (throughput does not depend on their values)",
    )
    parser.add_argument("--qlora", action="store_true", help="also run tunesmith with 4-bit QLoRA")
    parser.add_argument("--child", choices=["trl", "tunesmith", "qlora"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--eval", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    if args.model_dir:
        os.environ["BENCH_MODEL_DIR"] = str(_with_weights(Path(args.model_dir), work))
    train_rows, eval_rows = mixed_data(args.steps * 8, 24)
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    (work / "eval.json").write_text(json.dumps(eval_rows))
    peak = {d: matmul_peak(d, args.device) for d in ("bfloat16", "float32")}
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} cores"
    print(f"machine: {where}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(
        f"measured matmul peak: bf16 {peak['bfloat16']:.0f} GFLOP/s, fp32 {peak['float32']:.0f} GFLOP/s"
    )
    print(f"data: {len(train_rows)} examples (1, 2 and 4 turns), {args.steps} steps of batch 8\n")
    variants = ["trl", "tunesmith", *(["qlora"] if args.qlora else [])]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant in variants:
            out = work / f"{variant}-{round_}.json"
            subprocess.run(
                [sys.executable, str(HERE), "--child", variant, "--data", str(data),
                 "--eval", str(work / "eval.json"), "--steps", str(args.steps), "--out", str(out),
                 "--device", args.device],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            r = json.loads(out.read_text())
            results[variant].append(r)
            print(
                f"round {round_ + 1} {r['name']:<24} {r['tokens_per_s']:7.0f} tok/s "
                f"({r['assistant_tokens_per_s']:5.0f} assistant)  step {r['step_s']:5.2f} s  "
                f"peak mem {r['peak_rss_gb']:4.1f} GB  MFU {r['model_gflops_per_s'] / peak['bfloat16']:5.1%}  "
                f"eval loss {r['eval_loss']:.3f}",
                flush=True,
            )
    med = {
        v: {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "name"}
        for v, rs in results.items()
    }
    memory = "peak GPU memory (GB)" if args.device == "cuda" else "peak RSS (GB)"
    print(f"\nmedians{'':14}" + "".join(f"{v:>14}" for v in variants) + "   ratios to TRL")
    for key, label in (
        ("tokens_per_s", "tokens/s"),
        ("assistant_tokens_per_s", "assistant tok/s"),
        ("step_s", "step time (s)"),
        ("peak_rss_gb", memory),
        ("eval_loss", "held-out loss"),
    ):
        values = "".join(f"{med[v][key]:14.3f}" for v in variants)
        ratios = " ".join(f"{med[v][key] / med['trl'][key]:.2f}x" for v in variants[1:])
        print(f"{label:<21}{values}   {ratios}")
    mfu = "".join(f"{med[v]['model_gflops_per_s'] / peak['bfloat16']:14.1%}" for v in variants)
    print(f"{'MFU (bf16 peak)':<21}{mfu}")


if __name__ == "__main__":
    main()
