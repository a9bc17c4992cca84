"""The self-check: load what was written the way its users will, and answer like the source model."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tunesmith.data.records import Conversation
from tunesmith.export.merged import end_of_turn_ids
from tunesmith.models.loading import load_model, load_tokenizer, loadable, weights_folder
from tunesmith.models.spec import ModelSpec

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

ExportKind = Literal["merged", "adapter", "gguf", "ollama"]
GGUF_FILE = "model.gguf"
# Greedy answers must match token for token where nothing was rounded (merged, adapter, f16/bf16
# of an f16/bf16 model). Rounding (q8_0) flips near-ties, and one early flip makes the rest of a
# greedy answer differ: on the built-in SmolLM2-135M one of three q8_0 answers left the source's
# after 8 tokens. So a quantised export is scored teacher-forced instead: fed the source's own
# answer, how often does it pick the same next token? q8_0 gets 98% there (a broken export, with
# a wrong template, tensor order or vocabulary, gets near 0), so it must reach 0.9; q4_0 changes
# answers by design (67%) and is only reported.
THRESHOLDS: dict[str, float | None] = {
    "merged": 1.0,
    "adapter": 1.0,
    "f16": 1.0,
    "bf16": 1.0,
    "q8_0": 0.9,
    "q4_0": None,
}
BUILTIN_PROMPTS: list[list[dict]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write one sentence about the sea."}],
    [
        {"role": "system", "content": "You answer in JSON."},
        {"role": "user", "content": "Ship 3 lamps to Oslo."},
    ],
]


@dataclass
class CheckResult:
    """Per-prompt agreement, 1.0 = identical tokens: for a lossless export, the share of the longer
    greedy answer that both answers share as a prefix; for a rounded one (q8_0, q4_0), the share
    of the source's answer tokens the export picks when fed that answer. `threshold` None means
    reported, not enforced."""

    kind: str
    quant: str | None
    prompts: list[str]
    agreements: list[float]
    threshold: float | None
    seconds: float

    @property
    def mean(self) -> float:
        return sum(self.agreements) / len(self.agreements) if self.agreements else 1.0

    @property
    def passed(self) -> bool:
        if self.threshold is None:
            return True
        if self.threshold >= 1.0:  # exact: every prompt, not only the mean
            return all(a == 1.0 for a in self.agreements)
        return self.mean >= self.threshold


def prompts_from(conversations: list[Conversation], n: int = 4) -> list[list[dict]]:
    """The first user turn (with the system prompt before it) of the first `n` examples."""
    prompts = []
    for conversation in conversations[:n]:
        head = []
        for m in conversation.messages:
            role = "system" if m.role == "developer" else m.role
            if role in ("system", "user"):
                head.append({"role": role, "content": m.content or ""})
            if role == "user":
                break
        if head and head[-1]["role"] == "user":
            prompts.append(head)
    return prompts


def agreement(a: list[int], b: list[int]) -> float:
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    same = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    return same / longest


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompt: list[dict]):
    text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids


def teacher_forced(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: list[dict],
    answer: list[int],
) -> float:
    """The share of `answer`'s tokens the model picks itself when fed the answer so far."""
    import torch

    if not answer:
        return 1.0
    ids = prompt_ids(tokenizer, prompt)
    full = torch.cat([ids, torch.tensor([answer])], dim=1)
    with torch.no_grad():
        logits = model(full, attention_mask=torch.ones_like(full)).logits  # [1, len, vocab]
    picks = logits[0, ids.shape[1] - 1 : -1].argmax(-1).tolist()  # one per answer token
    return sum(p == a for p, a in zip(picks, answer, strict=True)) / len(answer)


def greedy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: list[dict],
    max_new_tokens: int,
    **stop,
) -> list[int]:
    """The new tokens of a greedy answer; stop tokens come from the model's generation_config
    unless given (the exported side is read only from its own files)."""
    import torch

    ids = prompt_ids(tokenizer, prompt)
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            **stop,
        )
    return out[0, ids.shape[1] :].tolist()


def load_written(
    kind: ExportKind, path: Path, source: ModelSpec
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """What was written, loaded by plain transformers/peft calls, never through the writer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with loadable(source.name, path, "export"):
        if kind in ("gguf", "ollama"):
            tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=GGUF_FILE)
            model = AutoModelForCausalLM.from_pretrained(
                path, gguf_file=GGUF_FILE, dtype=torch.float32
            )
        elif kind == "adapter":
            from peft import PeftModel

            tokenizer = AutoTokenizer.from_pretrained(path)
            base = AutoModelForCausalLM.from_pretrained(weights_folder(source), dtype=torch.float32)
            model = PeftModel.from_pretrained(base, str(path))
        else:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval(), tokenizer


def check_export(
    kind: ExportKind,
    path: Path,
    source_spec: ModelSpec,
    prompts: list[list[dict]] | None = None,
    max_new_tokens: int = 24,
    quant: str | None = None,
) -> CheckResult:
    """Answer each prompt greedily with the export and with the source model (base + adapter,
    fp32 on the CPU, so the reference is the same on every machine) and compare token by token."""
    import torch

    started = time.monotonic()
    prompts = prompts or BUILTIN_PROMPTS
    source_tokenizer = load_tokenizer(source_spec)
    stop = {
        "eos_token_id": end_of_turn_ids(source_tokenizer),
        "pad_token_id": source_tokenizer.pad_token_id,
    }
    source = load_model(source_spec, dtype=torch.float32, device="cpu")
    expected = [greedy(source, source_tokenizer, p, max_new_tokens, **stop) for p in prompts]
    del source
    written, tokenizer = load_written(kind, path, source_spec)
    key = quant if kind in ("gguf", "ollama") else kind
    threshold = THRESHOLDS.get(key or "f16")
    if threshold is not None and threshold >= 1.0:  # lossless: the export's own greedy answers
        answers = [greedy(written, tokenizer, p, max_new_tokens) for p in prompts]
        agreements = [agreement(a, b) for a, b in zip(expected, answers, strict=True)]
    else:  # rounded: next-token choices along the source's answers (see THRESHOLDS)
        agreements = [
            teacher_forced(written, tokenizer, p, a) for p, a in zip(prompts, expected, strict=True)
        ]
    result = CheckResult(
        kind=kind,
        quant=quant,
        prompts=[p[-1]["content"] for p in prompts],
        agreements=agreements,
        threshold=threshold,
        seconds=time.monotonic() - started,
    )
    log.info("Export check of %s: mean agreement %.3f", path, result.mean)
    return result
