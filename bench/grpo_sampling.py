"""GRPO's sampling: TRL's default (`generate` on left-padded prompts) vs tunesmith's running batch.

    python bench/grpo_sampling.py                 # 8 prompts x 4 answers, 64 tokens, 3 rounds
    python bench/grpo_sampling.py --rounds 1 --max-tokens 16

Both sample from the built-in model (SmolLM2-135M-Instruct) with a fresh LoRA adapter attached,
as a GRPO step does, with TRL's sampling defaults (temperature 1, top_p 1, no top-k), the same
prompts (the RFT yes/no task of the tests, each repeated `--generations` times) and the same
answer limit. TRL's path is what `GRPOTrainer._generate_single_turn` runs without vLLM: one
`generate` call, every row decoded until the longest is done. The two alternate, round after
round, in one process. Printed: answer tokens/s of each, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from tunesmith.models.catalog import DEFAULT_MODEL
    from tunesmith.models.loading import builtin_folder
    from tunesmith.train.grpo import sample_answers

    folder = builtin_folder(DEFAULT_MODEL)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    model.eval()
    questions = ["is the sky blue", "is water wet", "is fire hot", "is snow cold"]
    prompts = []
    for i in range(args.prompts):
        messages = [
            {"role": "user", "content": f"Answer in a sentence: {questions[i % len(questions)]}?"}
        ]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompts += [tokenizer(text, add_special_tokens=False)["input_ids"]] * args.generations
    eos = [tokenizer.eos_token_id]

    def trl_default() -> int:
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        config = GenerationConfig(
            max_new_tokens=args.max_tokens,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
            use_cache=True,
        )
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        answers = out[:, width:]
        # tokens up to and including the first end-of-turn token, as TRL keeps them
        total = 0
        for row in answers.tolist():
            total += next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        return total

    def tunesmith() -> int:
        answers = sample_answers(
            model,
            tokenizer,
            prompts,
            eos_ids=eos,
            max_tokens=args.max_tokens,
            temperature=1.0,
            top_p=1.0,
            device="cpu",
        )
        return sum(len(a) for a in answers)

    rates: dict[str, list[float]] = {"trl generate": [], "tunesmith running batch": []}
    for _ in range(args.rounds):
        for name, fn in (("trl generate", trl_default), ("tunesmith running batch", tunesmith)):
            start = time.perf_counter()
            tokens = fn()
            rates[name].append(tokens / (time.perf_counter() - start))
    print(
        f"{len(prompts)} answers ({args.prompts} prompts x {args.generations}), "
        f"up to {args.max_tokens} tokens, {args.rounds} rounds"
    )
    for name, values in rates.items():
        print(f"  {name:>24}: {statistics.median(values):7.1f} answer tokens/s (median)")
    ratio = statistics.median(rates["tunesmith running batch"]) / statistics.median(
        rates["trl generate"]
    )
    print(f"  ratio tunesmith / trl: {ratio:.2f}x")


if __name__ == "__main__":
    main()
