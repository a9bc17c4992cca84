"""Training throughput: plain TRL SFTTrainer with its defaults vs the `tunesmith train` path.

    python bench/train_throughput.py            # or: make bench-train
    python bench/train_throughput.py --steps 12 --rounds 1   # a quicker look
    python bench/train_throughput.py --method dpo            # DPOTrainer vs tunesmith's DPO

Both train the built-in model (SmolLM2-135M-Instruct) with the same LoRA config (r=16, alpha 32, no
dropout, all linear layers), batch 8, the same number of optimizer steps, on the same mixed-length
chat data (the demo task's one-turn examples plus two- and four-turn conversations built from
them). Each run is a fresh process (peak RSS is per process), and the two alternate, round after
round, so that drift on a shared machine hits both. Printed per run: tokens/s (every token through
the model, and assistant tokens), step time, peak RSS, model FLOPs utilisation against a matmul
peak measured here (about 2 s per dtype: bf16 where the CPU computes it natively, fp32 elsewhere,
as tunesmith trains), and the assistant-token loss on held-out examples after training, computed
the same way for both.

MFU counts 4·N FLOPs per token for LoRA (a forward pass, and a backward pass for the inputs only:
frozen weights get no weight gradient), N = parameters in matrix products (the tied output head
included, at every position), attention scores left out. It is the *model's* FLOPs: a path that
skips work (the head at unscored positions) earns it as utilisation.

--method dpo: TRL's DPOTrainer with DPOConfig's defaults (beta 0.1, sigmoid loss, lr 1e-6, bf16,
gradient checkpointing, padding, the base with adapters disabled as reference, its log-probs
computed at every step) against `tunesmith train --method dpo` (reference log-probs computed once
before step 1), same LoRA, batch 8 pairs, same steps, on preference pairs built from the same
mixed-length conversations: chosen = the real last answer, rejected = another example's answer.
tunesmith's reference pass is part of its cost: tokens/s is shown over the training steps and over
the whole run (the tokens trained over the time of every step and, for tunesmith, of the
reference pass over the training pairs). Tokens
are those through the policy (prompt + chosen and prompt + rejected, no padding); TRL runs every
one of them a second time through the reference, tunesmith once, before step 1. Held-out reward
accuracy is computed by this file for both: the saved adapter loaded with PEFT, summed answer
log-probs of chosen (c) and rejected (r) for policy (p) and base (r), accuracy = share of
held-out pairs with pc - rc > pr - rr.
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
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve()
ORDERS = HERE.parents[1] / "src" / "tunesmith" / "tasks" / "orders"
DPO_STEPS, DPO_ROUNDS = 3, 2  # --method dpo defaults: ~8 minutes on 2 CPU cores
DPO_EVAL_PAIRS = 16
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


def preference_pairs(rows: list[dict]) -> list[dict]:
    """Pairs from conversations: the prompt is all but the last answer, chosen is that answer,
    rejected another conversation's last answer (a wrong order), in TRL's conversational form."""
    pairs = []
    for i, row in enumerate(rows):
        chosen = row["messages"][-1]
        for k in range(1, len(rows)):
            other = rows[(i + k) % len(rows)]["messages"][-1]
            if other["content"] != chosen["content"]:
                break
        pairs.append(
            {"prompt": row["messages"][:-1], "chosen": [chosen], "rejected": [dict(other)]}
        )
    return pairs


def openai_dpo(pair: dict) -> dict:
    """A TRL conversational pair as a line of OpenAI's DPO format (what tunesmith reads)."""
    return {
        "input": {"messages": pair["prompt"]},
        "preferred_output": pair["chosen"],
        "non_preferred_output": pair["rejected"],
    }


# --- measuring --------------------------------------------------------------------------------------
def native_dtypes(device: str) -> list[str]:
    """The dtypes this device computes natively, the one training runs in first. bf16 only where
    tunesmith would train in it (models/hardware.py): elsewhere PyTorch emulates bf16 matmuls,
    slower than fp32, and timing them took more than 13 minutes on an AVX2-only CPU."""
    from tunesmith.models.hardware import pick_precision

    return ["bfloat16", "float32"] if pick_precision("auto", device) == "bf16" else ["float32"]


def matmul_peak(dtype_name: str, device: str = "cpu", budget_s: float = 2.0) -> float:
    """GFLOP/s of a square matmul on this machine, in the given dtype: as many as fit in
    `budget_s` seconds (at least one), after one untimed warm-up."""
    import torch

    size = 8192 if device == "cuda" else 2048
    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    a @ b
    sync()
    count, started = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - started < budget_s:
        a @ b
        sync()  # per matmul, so the clock sees finished work (a GPU would queue them)
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - started) / 1e9


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


@contextmanager
def plain_trl(method: str, data: Path, steps: int, device: str):
    """TRL's trainer for `method` ("sft" or "dpo") with its config's defaults, only the batch, the
    steps and LoRA fixed; yields it with the tokenizer, the step times and a scratch folder."""
    import torch
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    config_cls, trainer_cls = {
        "sft": (trl.SFTConfig, trl.SFTTrainer),
        "dpo": (trl.DPOConfig, trl.DPOTrainer),
    }[method]
    folder = bench_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory() as out:
        args = config_cls(
            output_dir=out, per_device_train_batch_size=8, max_steps=steps, report_to=[],
            save_strategy="no", logging_steps=1, seed=0, use_cpu=device == "cpu", disable_tqdm=True,
        )  # fmt: skip
        trainer = trainer_cls(
            model=model, args=args, train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer, peft_config=LoraConfig(**LORA, task_type="CAUSAL_LM"),
            callbacks=[Timer()],
        )  # fmt: skip
        yield trainer, tokenizer, times, Path(out)


def run_trl(data: Path, eval_rows: list[dict], steps: int, device: str) -> dict:
    """Plain TRL: SFTTrainer with SFTConfig's defaults (bf16 autocast, gradient checkpointing,
    padding to the longest, loss on every token), only the batch, steps and LoRA fixed."""
    counts: list[tuple[int, int]] = []
    with plain_trl("sft", data, steps, device) as (trainer, tokenizer, times, _):
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


# --- DPO ----------------------------------------------------------------------------------------------
def answer_logps(model, tokenizer, prompt: list[dict], answer: list[dict]) -> float:
    """Summed log-probability of the answer's tokens (its end of turn included) after the prompt,
    by the chat template alone: no code of either trainer."""
    import torch
    import torch.nn.functional as F

    head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
    assert full.startswith(head), "the template does not extend the prompt"
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    assert ids[: len(head_ids)] == head_ids
    x = torch.tensor([ids], device=model.device)
    n = len(ids) - len(head_ids)  # answer tokens: the head runs only where they are predicted
    logits = model(input_ids=x, logits_to_keep=n + 1).logits[0, :-1].float()
    return float(-F.cross_entropy(logits, x[0, len(head_ids) :], reduction="sum"))


def reward_accuracy(adapter: Path, eval_pairs: list[dict], device: str) -> tuple[float, float]:
    """Held-out reward accuracy and mean margin (unscaled by beta) of a trained LoRA adapter
    against the base model (the reference of both trainers), computed the same way for both."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = bench_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    wins, margins = 0, []
    with torch.no_grad():
        for pair in eval_pairs:
            p = [
                answer_logps(model, tokenizer, pair["prompt"], pair[k])
                for k in ("chosen", "rejected")
            ]
            with model.disable_adapter():
                r = [
                    answer_logps(model, tokenizer, pair["prompt"], pair[k])
                    for k in ("chosen", "rejected")
                ]
            margin = (p[0] - r[0]) - (p[1] - r[1])
            wins += margin > 0
            margins.append(margin)
    return wins / len(eval_pairs), statistics.mean(margins)


def run_trl_dpo(data: Path, eval_pairs: list[dict], steps: int, device: str) -> dict:
    """Plain TRL: DPOTrainer with DPOConfig's defaults (beta 0.1, sigmoid loss, lr 1e-6, bf16
    autocast, gradient checkpointing, padding to the longest, the reference = the base with the
    adapters disabled, its log-probs computed at every step), only batch, steps and LoRA fixed."""
    counts: list[tuple[int, int]] = []
    with plain_trl("dpo", data, steps, device) as (trainer, _, times, out):
        collate = trainer.data_collator

        def counting(examples):
            batch = collate(examples)
            # real tokens of prompt+chosen and prompt+rejected; answer tokens
            counts.append((int(batch["attention_mask"].sum()), int(batch["completion_mask"].sum())))
            return batch

        trainer.data_collator = counting  # the dataloader is built in train(): it sees this
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
        memory = peak_memory_gb(device)  # training's peak, before the evaluation loads anything
        trainer.save_model(str(out / "adapter"))
        accuracy, margin = reward_accuracy(out / "adapter", eval_pairs, device)
    return _dpo_summary(
        "TRL DPOTrainer defaults", times, counts, 0.0, 0, accuracy, margin, memory, wall,
        own_accuracy=None,
    )  # fmt: skip


def run_tunesmith_dpo(
    data: Path, valid: Path, eval_pairs: list[dict], steps: int, device: str
) -> dict:
    """`tunesmith train --method dpo --data train.jsonl --validation valid.jsonl`, as the CLI
    drives it (submit_here + run_claimed), the reference pass timed around its own function."""
    os.environ["TUNESMITH_HOME"] = tempfile.mkdtemp(prefix="bench-home-")
    import torch  # noqa: F401

    from tunesmith.jobs.service import run_claimed, submit_here
    from tunesmith.store import open_store
    from tunesmith.store.lifecycle import Runner
    from tunesmith.train import preference as pref
    from tunesmith.train.config import load_config

    reference: dict[str, tuple[float, int]] = {}  # dataset -> (seconds, tokens)
    original = pref.reference_logps
    step_tokens: list[int] = []  # counted here: the job's `tokens` metric counts a batch once
    train_step = pref.PreferenceTrainer.training_step  # per packed row on a CPU (see the report)

    def counted_step(self, model, inputs, num_items_in_batch=None):
        step_tokens.append(int(inputs["num_tokens"].sum()))  # real tokens, no padding
        return train_step(self, model, inputs, num_items_in_batch)

    pref.PreferenceTrainer.training_step = counted_step

    def timed_reference(model, datasets, collator, *, cache, **kwargs):
        # One call per dataset, each timed on its own (the training pairs' pass is training
        # cost, the validation pairs' is evaluation), each with a cache file of its own.
        out = {}
        for name, dataset in datasets.items():
            started = time.perf_counter()
            part = cache.with_name(f"{cache.stem}-{name}.json")
            out |= original(model, {name: dataset}, collator, cache=part, **kwargs)
            tokens = sum(len(seq) for unit in dataset["ids"] for seq in unit)
            reference[name] = (time.perf_counter() - started, tokens)
        return out

    pref.reference_logps = timed_reference
    settings = json.loads(os.environ.get("BENCH_SETTINGS", "{}"))  # for trying levers by hand
    model = str(bench_model_dir()) if os.environ.get("BENCH_MODEL_DIR") else "smollm2-135m-instruct"
    config = load_config(
        None,
        {
            "method": "dpo", "data": str(data), "validation": str(valid), "model": model,
            "epochs": 1, "batch_size": 8, "device": device,
            "lora": {"r": LORA["r"], "lora_alpha": LORA["lora_alpha"]}, **settings,
        },
    )  # fmt: skip
    store = open_store()
    runner = Runner.here()
    started = time.perf_counter()
    job = submit_here(store, config, runner).job
    job = run_claimed(store, job.id, runner)
    wall = time.perf_counter() - started
    assert job.status == "succeeded", (job.status, job.error)
    metrics = store.events.metrics(job.id)[:steps]
    times = [m["step_seconds"] for m in metrics]
    counts = [(n, m["scored_tokens"]) for n, m in zip(step_tokens, metrics, strict=False)]
    memory = peak_memory_gb(device)  # training's peak, before the evaluation loads anything
    spec = store.models.resolve(job.fine_tuned_model)
    accuracy, margin = reward_accuracy(Path(spec.adapter), eval_pairs, device)
    ref_s, ref_tokens = reference.get("train", (0.0, 0))
    return _dpo_summary(
        "tunesmith train dpo", times, counts, ref_s, ref_tokens, accuracy, margin, memory, wall,
        own_accuracy=metrics[-1].get("full_valid_reward_accuracy"),
        ref_valid_s=reference.get("valid", (0.0, 0))[0],
        own_tokens=sum(m["tokens"] for m in metrics),
    )  # fmt: skip


def _dpo_summary(
    name: str,
    times: list[float],
    counts: list[tuple[int, int]],
    ref_s: float,
    ref_tokens: int,
    accuracy: float,
    margin: float,
    memory_gb: float,
    wall_s: float,
    own_accuracy: float | None,
    ref_valid_s: float = 0.0,
    own_tokens: int | None = None,
) -> dict:
    counts = counts[: len(times)]
    # Whole run: the tokens trained, over the time of every step (the first too) and of the
    # reference pass over the training pairs (whose forwards are not counted as tokens: TRL's
    # reference forwards, inside its steps, are not either).
    run_tokens = sum(c[0] for c in counts)
    run_seconds = sum(times) + ref_s
    # Steps only: the first step pays one-off costs (allocations, kernel choice): left out.
    steady, steady_counts = times[1:], counts[1:]
    return {
        "name": name,
        "steps": len(times),
        "tokens_per_s": sum(c[0] for c in steady_counts) / sum(steady),
        "answer_tokens_per_s": sum(c[1] for c in steady_counts) / sum(steady),
        "run_tokens_per_s": run_tokens / run_seconds,
        "step_s": statistics.median(steady),
        "reference_s": ref_s,
        "reference_tokens": ref_tokens,
        "reference_valid_s": ref_valid_s,
        "wall_s": wall_s,
        "peak_rss_gb": memory_gb,
        "reward_accuracy": accuracy,
        "reward_margin": margin,
        "own_valid_accuracy": own_accuracy,
        "trained_tokens": sum(c[0] for c in counts),
        "own_tokens": own_tokens,  # what the trainer itself reports, for comparison
    }


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
def run_child(variant: str, out: Path, *flags: str) -> dict:
    """One measured run in a fresh process (peak RSS is per process); its result."""
    subprocess.run(
        [sys.executable, str(HERE), "--child", variant, "--out", str(out), *flags],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return json.loads(out.read_text())


def child(args) -> None:
    eval_rows = json.loads(Path(args.eval).read_text())
    data = Path(args.data)
    if args.child == "trl-dpo":
        result = run_trl_dpo(data, eval_rows, args.steps, args.device)
    elif args.child == "tunesmith-dpo":
        result = run_tunesmith_dpo(data, Path(args.valid), eval_rows, args.steps, args.device)
    elif args.child == "trl":
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
    parser.add_argument("--method", choices=["sft", "dpo"], default="sft", help="what to train")
    parser.add_argument(
        "--steps",
        type=int,
        help="optimizer steps per run (batch 8); default 6 (sft), 3 (dpo)",
    )
    parser.add_argument("--rounds", type=int, help="alternating rounds of both runs; default 2")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--model-dir",
        help="train this model folder instead of the built-in one; a folder with only config.json "
        "and the tokenizer gets random weights (throughput does not depend on their values)",
    )
    parser.add_argument("--qlora", action="store_true", help="also run tunesmith with 4-bit QLoRA")
    parser.add_argument(
        "--child", choices=["trl", "tunesmith", "qlora", "trl-dpo", "tunesmith-dpo"],
        help=argparse.SUPPRESS,
    )  # fmt: skip
    parser.add_argument("--valid", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--eval", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps is None:
        args.steps = DPO_STEPS if args.method == "dpo" else 6
    if args.rounds is None:
        args.rounds = DPO_ROUNDS if args.method == "dpo" else 2
    if args.child:
        child(args)
        return
    if args.method == "dpo":
        if args.qlora:
            parser.error("--qlora is for the SFT bench")
        main_dpo(args)
        return

    import torch

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    if args.model_dir:
        os.environ["BENCH_MODEL_DIR"] = str(_with_weights(Path(args.model_dir), work))
    train_rows, eval_rows = mixed_data(args.steps * 8, 24)
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    (work / "eval.json").write_text(json.dumps(eval_rows))
    peak = {d: matmul_peak(d, args.device) for d in native_dtypes(args.device)}
    # MFU against the peak of the dtype training computes in: bf16 where native, else fp32.
    compute = next(iter(peak))
    short = {"bfloat16": "bf16", "float32": "fp32"}
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} cores"
    print(f"machine: {where}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(
        "measured matmul peak: "
        + ", ".join(f"{short[d]} {gflops:.0f} GFLOP/s" for d, gflops in peak.items())
        + ("" if "bfloat16" in peak else " (no native bf16 here: not measured)")
    )
    print(f"data: {len(train_rows)} examples (1, 2 and 4 turns), {args.steps} steps of batch 8\n")
    variants = ["trl", "tunesmith", *(["qlora"] if args.qlora else [])]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant in variants:
            r = run_child(
                variant, work / f"{variant}-{round_}.json", "--data", str(data),
                "--eval", str(work / "eval.json"), "--steps", str(args.steps),
                "--device", args.device,
            )  # fmt: skip
            results[variant].append(r)
            print(
                f"round {round_ + 1} {r['name']:<24} {r['tokens_per_s']:7.0f} tok/s "
                f"({r['assistant_tokens_per_s']:5.0f} assistant)  step {r['step_s']:5.2f} s  "
                f"peak mem {r['peak_rss_gb']:4.1f} GB  MFU {r['model_gflops_per_s'] / peak[compute]:5.1%}  "
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
    mfu = "".join(f"{med[v]['model_gflops_per_s'] / peak[compute]:14.1%}" for v in variants)
    print(f"{f'MFU ({short[compute]} peak)':<21}{mfu}")


def main_dpo(args) -> None:
    import torch

    work = Path(tempfile.mkdtemp(prefix="bench-dpo-"))
    if args.model_dir:
        os.environ["BENCH_MODEL_DIR"] = str(_with_weights(Path(args.model_dir), work))
    train_rows, _ = mixed_data(args.steps * 8, 0)
    # Held out: one-turn orders of the task's validation split (mixed_data draws on train and
    # test), short, so that scoring them four ways (policy and base, chosen and rejected) in
    # fp32 stays a small part of the run.
    valid_rows = [
        json.loads(line) for line in (ORDERS / "validation.jsonl").read_text().splitlines()
    ]
    train_pairs = preference_pairs(train_rows)
    eval_pairs = preference_pairs(valid_rows[:DPO_EVAL_PAIRS])
    trl_data, data, valid = work / "trl.jsonl", work / "train.jsonl", work / "valid.jsonl"
    trl_data.write_text("".join(json.dumps(p) + "\n" for p in train_pairs))
    data.write_text("".join(json.dumps(openai_dpo(p)) + "\n" for p in train_pairs))
    valid.write_text("".join(json.dumps(openai_dpo(p)) + "\n" for p in eval_pairs))
    (work / "eval.json").write_text(json.dumps(eval_pairs))
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} cores"
    print(f"machine: {where}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(
        f"data: {len(train_pairs)} preference pairs (prompts of 1, 2 and 4 turns), "
        f"{args.steps} steps of batch 8; {len(eval_pairs)} held-out one-turn pairs\n"
    )
    variants = ["trl-dpo", "tunesmith-dpo"]
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant in variants:
            r = run_child(
                variant, work / f"{variant}-{round_}.json", "--method", "dpo",
                "--data", str(trl_data if variant == "trl-dpo" else data), "--valid", str(valid),
                "--eval", str(work / "eval.json"), "--steps", str(args.steps),
                "--device", args.device,
            )  # fmt: skip
            results[variant].append(r)
            own = r["own_valid_accuracy"]
            print(
                f"round {round_ + 1} {r['name']:<24} {r['tokens_per_s']:6.0f} tok/s steps, "
                f"{r['run_tokens_per_s']:6.0f} whole run ({r['answer_tokens_per_s']:4.0f} answer)  "
                f"step {r['step_s']:5.2f} s  ref pass {r['reference_s']:5.1f} s  "
                f"peak mem {r['peak_rss_gb']:4.2f} GB  held-out reward acc "
                f"{r['reward_accuracy']:.3f} (margin {r['reward_margin']:+.2f}"
                + (f", its own {own:.3f})" if own is not None else ")"),
                flush=True,
            )
    med = {
        v: {
            k: statistics.median(r[k] for r in rs)
            for k in rs[0]
            if k != "name" and all(r[k] is not None for r in rs)
        }
        for v, rs in results.items()
    }
    memory = "peak GPU memory (GB)" if args.device == "cuda" else "peak RSS (GB)"
    print(f"\nmedians{'':22}{'TRL':>12}{'tunesmith':>12}   tunesmith/TRL")
    for key, label in (
        ("tokens_per_s", "tokens/s (steps)"),
        ("run_tokens_per_s", "tokens/s (whole run)"),
        ("answer_tokens_per_s", "answer tokens/s"),
        ("step_s", "step time (s)"),
        ("reference_s", "reference pass (s)"),
        ("peak_rss_gb", memory),
        ("reward_accuracy", "held-out reward acc"),
        ("reward_margin", "held-out margin"),
    ):
        a, b = med["trl-dpo"][key], med["tunesmith-dpo"][key]
        ratio = f"{b / a:.2f}x" if a else "-"
        print(f"{label:<29}{a:12.3f}{b:12.3f}   {ratio}")
    t = med["tunesmith-dpo"]
    print(
        f"(tunesmith also computes the validation pairs' reference once, {t['reference_valid_s']:.1f} s, "
        "for its own evaluation; TRL runs no evaluation, so neither counts it)"
    )
    if t.get("own_tokens") and t["own_tokens"] != t["trained_tokens"]:
        print(
            f"(tunesmith's own `tokens` metric says {t['own_tokens']:.0f} tokens trained; counted "
            f"here: {t['trained_tokens']:.0f}. The counted ones are used.)"
        )
    speed = t["run_tokens_per_s"] / med["trl-dpo"]["run_tokens_per_s"]
    goal = (
        speed >= 2
        and t["peak_rss_gb"] <= med["trl-dpo"]["peak_rss_gb"]
        and t["reward_accuracy"] >= med["trl-dpo"]["reward_accuracy"]
    )
    print(
        f"goal (>= 2x whole-run tokens/s, <= TRL's memory, >= TRL's held-out accuracy): "
        f"{'met' if goal else 'not met'} ({speed:.2f}x)"
    )


if __name__ == "__main__":
    main()
