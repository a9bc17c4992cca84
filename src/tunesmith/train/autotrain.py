"""AutoTrain Advanced's LLM configs and `autotrain llm` flags, read as tunesmith settings.

AutoTrain (huggingface/autotrain-advanced, last release January 2025) flattens its YAML
(`task`, `base_model`, `project_name`, `data: {path, train_split, valid_split, chat_template,
column_mapping}`, `params: {...}`, `hub: {...}`) into one set of `LLMTrainingParams`, and its CLI
takes the same params as flags. Both land here as that flat dict (`LLMParams`, with AutoTrain's
own defaults, so a config means what it meant there), and one translation turns it into the
settings `parse_config` takes. Each param is mapped (`RENAMED`, or a rule below), or answered
(`ANSWERS`): what tunesmith does instead, as a `Note`. A warning is a setting tunesmith cannot
honour as written (CUDA-only, the hub); `strict` refuses those instead of approximating them.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tunesmith.errors import TunesmithError
from tunesmith.models.catalog import HUB_IDS

# The top-level keys that tell an AutoTrain config from a tunesmith one (tunesmith has neither).
MARKERS = ("task", "base_model")
# AutoTrain's `task` -> its trainer (`llm-generic` is its alias of the plain `llm` trainer).
TASKS: dict[str, str] = {
    "llm": "default",
    "llm-generic": "default",
    "llm-sft": "sft",
    "llm-dpo": "dpo",
    "llm-orpo": "orpo",
    "llm-reward": "reward",
}
# AutoTrain's trainer -> tunesmith's method. `default` is a language model on the whole text.
METHODS: dict[str, str] = {"default": "sft", "sft": "sft", "dpo": "dpo", "orpo": "orpo"}
# Where each flat param sits in AutoTrain's YAML, for messages (the rest sit under `params`).
YAML_KEYS: dict[str, str] = {
    "model": "base_model",
    "trainer": "task",
    "project_name": "project_name",
    "log": "log",
    "backend": "backend",
    "data_path": "data.path",
    "train_split": "data.train_split",
    "valid_split": "data.valid_split",
    "chat_template": "data.chat_template",
    "text_column": "data.column_mapping.text_column",
    "prompt_text_column": "data.column_mapping.prompt_text_column",
    "rejected_text_column": "data.column_mapping.rejected_text_column",
    "username": "hub.username",
    "token": "hub.token",
    "push_to_hub": "hub.push_to_hub",
}
# The YAML's sections and the keys each may hold (`params`: LLMParams' fields, below).
SECTIONS: dict[str, tuple[str, ...]] = {
    "": ("task", "base_model", "project_name", "log", "backend", "data", "params", "hub"),
    "data": ("path", "train_split", "valid_split", "chat_template", "column_mapping"),
    "data.column_mapping": ("text_column", "prompt_text_column", "rejected_text_column"),
    "hub": ("username", "token", "push_to_hub"),
}
# Keys tunesmith never uses: an unset ${VAR} in them is no error (AutoTrain makes it None too).
UNUSED_VARIABLES = ("hub.username", "hub.token")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class LLMParams(BaseModel):
    """AutoTrain's `LLMTrainingParams` (src/autotrain/trainers/clm/params.py): every param with
    AutoTrain's default. Unknown params are refused, with a did-you-mean."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = "gpt2"
    project_name: str = "project-name"
    data_path: str = "data"
    train_split: str = "train"
    valid_split: str | None = None
    add_eos_token: bool = True
    block_size: int | list[int] = -1
    model_max_length: int = 2048
    padding: str | None = "right"
    trainer: str = "default"
    use_flash_attention_2: bool = False
    log: str = "none"
    disable_gradient_checkpointing: bool = False
    logging_steps: int = -1
    eval_strategy: str = "epoch"
    save_total_limit: int = 1
    auto_find_batch_size: bool = False
    mixed_precision: str | None = None
    lr: float = 3e-5
    epochs: int = 1
    batch_size: int = 2
    warmup_ratio: float = 0.1
    gradient_accumulation: int = 4
    optimizer: str = "adamw_torch"
    scheduler: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    chat_template: str | None = None
    quantization: str | None = "int4"
    target_modules: str | None = "all-linear"
    merge_adapter: bool = False
    peft: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    model_ref: str | None = None
    dpo_beta: float = 0.1
    max_prompt_length: int = 128
    max_completion_length: int | None = None
    prompt_text_column: str | None = None
    text_column: str = "text"
    rejected_text_column: str | None = None
    push_to_hub: bool = False
    username: str | None = None
    token: str | None = None
    unsloth: bool = False
    distributed_backend: str | None = None
    # Not a param of LLMTrainingParams, but of the config and the CLI (`--backend`).
    backend: str = "local"


SECTIONS["params"] = tuple(LLMParams.model_fields)
# transformers', TRL's and tunesmith's names that people carry into `params` -> AutoTrain's.
ALIASES: dict[str, str] = {
    "learning_rate": "lr",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation",
    "lr_scheduler_type": "scheduler",
    "lr_scheduler": "scheduler",
    "optim": "optimizer",
    "max_seq_length": "block_size",
    "max_length": "block_size",
    "beta": "dpo_beta",
    "r": "lora_r",
}


@dataclass(frozen=True)
class Note:
    """What became of one AutoTrain setting that tunesmith does not take as is."""

    key: str  # AutoTrain's name of it, as written in the YAML (`params.optimizer`)
    message: str
    level: Literal["info", "warning"] = "warning"  # warning: approximated or not done

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


Say = Callable[..., None]  # note(param, message, level="warning"): one Note about a param


@dataclass
class Translation:
    values: dict[str, Any]  # for parse_config
    notes: list[Note]
    trainer: str


# AutoTrain param -> tunesmith setting, the value unchanged (same meaning, same unit).
RENAMED: dict[str, str] = {
    "lr": "learning_rate",
    "epochs": "epochs",
    "warmup_ratio": "warmup_ratio",
    "weight_decay": "weight_decay",
    "seed": "seed",
    "lora_r": "lora.r",
    "lora_alpha": "lora.lora_alpha",
    "lora_dropout": "lora.lora_dropout",
    "project_name": "suffix",
}
# AutoTrain param -> (the values needing no word, what tunesmith does instead, level). Said only
# for params the config or the flags name, never for AutoTrain's defaults.
ANSWERS: dict[str, tuple[tuple[Any, ...], str, Literal["info", "warning"]]] = {
    "log": (
        ("none",),
        "no experiment tracker is used; the metrics of every step are in the job's events, its "
        "step_metrics.csv and loss.png (`tunesmith jobs show JOB`).",
        "info",
    ),
    "backend": (
        ("local", "local-cli", "local-ui"),
        "tunesmith trains here, in this process (Spaces, endpoints and NGC are not used).",
        "warning",
    ),
    "padding": (
        (),
        "not needed: tunesmith packs a step's examples into rows without padding.",
        "info",
    ),
    "add_eos_token": (
        (True,),
        "tunesmith always puts the end-of-turn (or end-of-text) token in the loss: a model that "
        "never learns it never stops.",
        "warning",
    ),
    "model_max_length": ((), "the longest example is block_size (max_length).", "info"),
    "logging_steps": ((-1,), "tunesmith records the loss at every step.", "info"),
    "save_total_limit": (
        (),
        "tunesmith keeps the checkpoints of its job (listed by `tunesmith jobs show JOB`).",
        "info",
    ),
    "auto_find_batch_size": (
        (False,),
        "not used: a CPU run does not run out of GPU memory; batch_size is taken as given.",
        "warning",
    ),
    "disable_gradient_checkpointing": (
        (),
        "tunesmith trains without gradient checkpointing unless gradient_checkpointing: true.",
        "info",
    ),
    "max_grad_norm": ((1.0,), "tunesmith clips gradients at a norm of 1.0.", "warning"),
    "merge_adapter": (
        (False,),
        "the LoRA adapter is registered as a model and served on its base; "
        "`tunesmith export MODEL --format merged --out DIR` writes the merged weights.",
        "info",
    ),
    "push_to_hub": (
        (False,),
        "no hub is used: the model is registered in tunesmith's store (under TUNESMITH_HOME) as "
        "ft:BASE:…:PROJECT_NAME:…, callable at once (`tunesmith chat MODEL`, the API); "
        "`tunesmith export` writes it to a folder to upload yourself.",
        "warning",
    ),
    "username": ((None,), "not used: no hub is contacted.", "info"),
    "token": ((None,), "not used: no hub is contacted.", "info"),
    "unsloth": (
        (False,),
        "Unsloth needs a CUDA GPU; tunesmith's own trainer runs instead (packed rows, no "
        "cross-example attention).",
        "warning",
    ),
    "use_flash_attention_2": (
        (False,),
        "FlashAttention 2 needs a CUDA GPU; tunesmith uses PyTorch's scaled-dot-product attention.",
        "warning",
    ),
    "distributed_backend": (
        (None,),
        "tunesmith trains in one process here; no DDP or DeepSpeed.",
        "warning",
    ),
    "max_prompt_length": (
        (),
        "tunesmith keeps the answers whole and cuts a pair's prompt from the left only when the "
        "pair is longer than block_size (max_length).",
        "info",
    ),
    "max_completion_length": (
        (None,),
        "answers are kept whole; a pair longer than block_size loses the start of its prompt.",
        "info",
    ),
}
# AutoTrain (transformers) optimizers -> what tunesmith does. tunesmith trains with torch AdamW.
ADAMW = ("adamw_torch", "adamw_hf", "adamw_torch_fused", "adamw")
CUDA_OPTIMIZERS = ("adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")
# transformers schedulers -> tunesmith's (linear, cosine, constant; each after its warm-up).
SCHEDULERS: dict[str, str] = {
    "linear": "linear",
    "cosine": "cosine",
    "constant": "constant",
    "constant_with_warmup": "constant",
    "cosine_with_restarts": "cosine",
    "cosine_with_min_lr": "cosine",
    "polynomial": "linear",
}
# AutoTrain's mixed_precision -> tunesmith's precision ("auto": bf16 where the chip computes it
# natively, else fp32, since emulated bf16 is slower than fp32).
FP16 = (
    "fp16 autocast is for CUDA GPUs; tunesmith uses bf16 where the chip has bf16 units, else fp32 "
    "(precision: auto)."
)
PRECISIONS: dict[str | None, tuple[str, str | None]] = {
    None: ("fp32", None),
    "none": ("fp32", None),
    "no": ("fp32", None),
    "bf16": ("auto", None),
    "fp16": ("auto", FP16),
}
# The chat templates AutoTrain knows; none (null) reads text_column as plain text.
NO_TEMPLATE = (None, "none", "None", "null")
TEMPLATES = (*NO_TEMPLATE, "tokenizer", "chatml", "zephyr")
DATA_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")  # AutoTrain reads csv and jsonl


def is_autotrain(values: dict[str, Any]) -> bool:
    return any(key in values for key in MARKERS)


def from_yaml(
    values: dict[str, Any], source: Path, *, strict: bool = False, cuda: bool | None = None
) -> Translation:
    """An AutoTrain config file's contents as tunesmith settings (relative data paths are
    relative to the file, then to the current folder, where AutoTrain reads them)."""
    resolved = resolve_variables(values)
    check_keys(resolved)
    task = resolved.get("task")
    if task not in TASKS:
        close = difflib.get_close_matches(str(task), list(TASKS), n=1)
        raise TunesmithError(
            f"{source}: task {task!r} is not an AutoTrain LLM task."
            + (f" Did you mean {close[0]!r}?" if close else ""),
            f"The tasks tunesmith runs: {', '.join(TASKS)}.",
            param="task",
        )
    data = resolved.get("data") or {}
    flat: dict[str, Any] = {
        "model": resolved.get("base_model"),
        "project_name": resolved.get("project_name"),
        "log": resolved.get("log"),
        "backend": resolved.get("backend"),
        "data_path": data.get("path"),
        "train_split": data.get("train_split"),
        "valid_split": data.get("valid_split"),
        "chat_template": data.get("chat_template"),
        "trainer": TASKS[task],
        **(data.get("column_mapping") or {}),
        **(resolved.get("hub") or {}),
    }
    # As AutoTrain's parser does: params last, so they win; null means "not given" (its default).
    written = {k: v for k, v in flat.items() if v is not None}
    written.update(resolved.get("params") or {})
    return translate(written, source.parent, strict=strict, cuda=cuda)


def detected(source: str | Path, translation: Translation) -> Note:
    """The first thing said: which format was read, and as what."""
    return Note(
        "task",
        f"Read {source} as AutoTrain Advanced's LLM format (its {translation.trainer} "
        f"trainer), as tunesmith's method {translation.values['method']}; `--print-config` "
        "shows the tunesmith settings it became.",
        "info",
    )


def resolve_variables(value: Any, key: str = "") -> Any:
    """`${VAR}` anywhere in a string, from the environment; a malformed one, or an unset one in a
    key tunesmith uses, is an error naming the key."""
    if isinstance(value, dict):
        return {k: resolve_variables(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_variables(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value
    rest = _VARIABLE.sub("", value)
    if "${" in rest:
        raise TunesmithError(
            f"{key}: {value!r} holds a malformed ${{VAR}} reference.",
            "Write it as ${NAME}: a name of letters, digits and underscores, in braces.",
            param=key,
        )
    missing = [name for name in _VARIABLE.findall(value) if name not in os.environ]
    if missing and key in UNUSED_VARIABLES:
        return None
    if missing:
        raise TunesmithError(
            f"{key}: the environment variable {missing[0]} is not set (in {value!r}).",
            f"Set it (export {missing[0]}=...) or write the value into the config.",
            param=key,
        )
    return _VARIABLE.sub(lambda m: os.environ[m[1]], value)


def check_keys(values: dict[str, Any]) -> None:
    """Refuse a key AutoTrain's config does not have, with tunesmith's did-you-mean."""
    from tunesmith.train.config import did_you_mean

    for section, allowed in SECTIONS.items():
        node: Any = values
        for part in filter(None, section.split(".")):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            continue
        if not isinstance(node, dict):
            raise TunesmithError(f"{section}: must be a mapping of settings.", param=section)
        for key in node:
            if key not in allowed:
                where = f"{section}.{key}" if section else str(key)
                tip = did_you_mean(key, allowed, ALIASES if section == "params" else None)
                listed = (
                    "those of AutoTrain's LLMTrainingParams (src/autotrain/trainers/clm/params.py)"
                    if section == "params"
                    else ", ".join(allowed)
                )
                raise TunesmithError(
                    f"{where!r} is not a key of an AutoTrain config.{tip}",
                    f"{section or 'The top level'} may hold: {listed}.",
                    param=where,
                )


def yaml_key(param: str) -> str:
    return YAML_KEYS.get(param, f"params.{param}")


def parse_params(written: dict[str, Any]) -> LLMParams:
    """The flat params with AutoTrain's defaults; a value of the wrong type is an error (unknown
    keys were refused by `check_keys`, unknown flags by the CLI)."""
    try:
        return LLMParams(**written)
    except ValidationError as exc:
        err = exc.errors()[0]
        param = str(err["loc"][0]) if err["loc"] else "params"
        raise TunesmithError(
            f"Invalid AutoTrain setting {yaml_key(param)}={err.get('input')!r}: {err['msg']}.",
            "AutoTrain's params are those of LLMTrainingParams "
            "(src/autotrain/trainers/clm/params.py).",
            param=yaml_key(param),
        ) from None


def translate(
    written: dict[str, Any], base_dir: Path, *, strict: bool = False, cuda: bool | None = None
) -> Translation:
    """AutoTrain's flat params (those written; the rest take AutoTrain's defaults) as tunesmith
    settings, with a note for each one that is approximated, ignored or worth saying."""
    params = parse_params(written)
    notes: list[Note] = []
    out: dict[str, Any] = {}

    def note(param: str, message: str, level: Literal["info", "warning"] = "warning") -> None:
        notes.append(Note(yaml_key(param), message, level))

    trainer = params.trainer
    if trainer not in METHODS:
        hint = (
            "tunesmith trains no reward models; train with dpo or orpo on the same pairs."
            if trainer == "reward"
            else f"AutoTrain's LLM trainers that tunesmith runs: {', '.join(METHODS)}."
        )
        raise TunesmithError(
            f"{yaml_key('trainer')}: the {trainer!r} trainer is not supported.",
            hint,
            param="trainer",
        )
    out["method"] = METHODS[trainer]
    # The hub id of a built-in model is that model; another one resolves as any model name
    # does (a local folder, or the local Hugging Face cache: the hub is never contacted).
    out["model"] = HUB_IDS.get(params.model, params.model)
    for param, setting in RENAMED.items():
        section, _, name = setting.rpartition(".")
        (out.setdefault(section, {}) if section else out)[name] = getattr(params, param)
    for param, (quiet, message, level) in ANSWERS.items():
        if param in written and getattr(params, param) not in quiet:
            note(param, message, level)

    # One optimizer step sees batch_size x gradient_accumulation examples in both tools;
    # tunesmith packs them into rows itself, so that product is its batch_size.
    out["batch_size"] = params.batch_size * params.gradient_accumulation
    if "gradient_accumulation" in written or "batch_size" in written:
        note(
            "gradient_accumulation",
            f"batch_size {params.batch_size} x gradient_accumulation "
            f"{params.gradient_accumulation} = batch_size {out['batch_size']} examples per step.",
            "info",
        )
    out["max_length"] = max_length(params, note)
    out.update(tuning(params, written, note, cuda))
    out["lr_scheduler"] = scheduler(params.scheduler, note)
    out["precision"] = precision(params.mixed_precision, "mixed_precision" in written, note)
    optimizer(params.optimizer, note)
    if params.target_modules not in (None, "all-linear"):
        out.setdefault("lora", {})["target_modules"] = [
            name.strip() for name in params.target_modules.split(",") if name.strip()
        ]
    if out["method"] == "dpo":
        out["beta"] = params.dpo_beta
        if params.model_ref not in (None, params.model):
            note(
                "model_ref",
                "tunesmith's reference is the model as training begins (the base model); "
                f"{params.model_ref!r} is not used.",
            )
    elif "dpo_beta" in written:
        note("dpo_beta", f"used by the dpo trainer only; {trainer} keeps its default.", "info")
    if params.eval_strategy == "steps" and params.logging_steps > 0:
        out["eval_steps"] = params.logging_steps  # transformers' eval_steps falls back to it
    elif "eval_strategy" in written:
        note(
            "eval_strategy",
            "tunesmith computes the validation loss about 10 times per run and on the last step "
            "(eval_steps: auto), when there is validation data.",
            "info",
        )
    out.update(data_settings(params, written, base_dir, note))
    if strict:
        refused = [n for n in notes if n.level == "warning"]
        if refused:
            raise TunesmithError(
                f"--strict: {len(refused)} AutoTrain setting(s) cannot run here as written: "
                + " ".join(f"{n}" for n in refused),
                "Change those settings, or run without --strict to train with the substitutes "
                "named.",
                param=refused[0].key,
            )
    return Translation(values=out, notes=notes, trainer=trainer)


def max_length(params: LLMParams, note: Say) -> int:
    """block_size, as AutoTrain's trainers take it (-1: 1024, capped by model_max_length)."""
    block = params.block_size
    if isinstance(block, list):
        note("block_size", f"one length per run; the longest of {block} is used.")
        block = max(block)
    return min(block, params.model_max_length) if block > 0 else min(1024, params.model_max_length)


def tuning(
    params: LLMParams, written: dict[str, Any], note: Say, cuda: bool | None
) -> dict[str, Any]:
    """peft and quantization. AutoTrain quantizes only with peft (QLoRA)."""
    if not params.peft:
        if "quantization" in written and params.quantization:
            note("quantization", "AutoTrain quantizes with peft only; ignored, as there.", "info")
        return {"tuning": "full"}
    if params.quantization in (None, "none", "None"):
        return {"tuning": "lora"}
    if cuda is None:
        from tunesmith.models.hardware import pick_device

        cuda = pick_device("auto") == "cuda"
    if cuda and params.quantization == "int4":
        return {"tuning": "lora", "load_in_4bit": True}
    why = (
        "QLoRA needs a CUDA GPU (bitsandbytes)"
        if not cuda
        else "tunesmith quantizes to 4 bits only"
    )
    note(
        "quantization",
        f"{params.quantization}: {why}; tunesmith trains LoRA on the unquantized weights instead, "
        "in the precision mixed_precision asks for (bf16 or fp16: bf16 where the chip has bf16 "
        "units, else fp32; none: fp32).",
    )
    return {"tuning": "lora"}


def scheduler(name: str, note: Say) -> str:
    if name in SCHEDULERS:
        if SCHEDULERS[name] != name:
            note("scheduler", f"{name} is approximated by tunesmith's {SCHEDULERS[name]}.")
        return SCHEDULERS[name]
    note("scheduler", f"{name!r} is not one of tunesmith's (linear, cosine, constant); linear.")
    return "linear"


def precision(value: str | None, was_written: bool, note: Say) -> str:
    if value not in PRECISIONS:
        note("mixed_precision", f"{value!r} is not fp16, bf16 or none; precision: auto is used.")
        return "auto"
    setting, message = PRECISIONS[value]
    if message and was_written:
        note("mixed_precision", message)
    return setting


def optimizer(name: str, note: Say) -> None:
    """tunesmith trains with torch's AdamW: the 8-bit and paged ones are bitsandbytes' (CUDA)."""
    if name in ADAMW:
        return
    if name in CUDA_OPTIMIZERS:
        note(
            "optimizer",
            f"{name} is bitsandbytes' and needs a CUDA GPU; tunesmith uses torch's AdamW "
            "(adamw_torch) instead, at full precision.",
        )
    else:
        note("optimizer", f"{name} is not available; tunesmith uses torch's AdamW (adamw_torch).")


def data_settings(
    params: LLMParams, written: dict[str, Any], base_dir: Path, note: Say
) -> dict[str, Any]:
    """data.path (a file, a folder of {split}.csv|jsonl as AutoTrain reads it, or a saved
    dataset), the splits, the chat template and the column mapping."""
    train, whole = split_file(params.data_path, params.train_split, base_dir, "train_split")
    out: dict[str, Any] = {"data": str(train)}
    if params.valid_split and whole:
        note("valid_split", "data.path names one file, so there is no split to validate on.")
    elif params.valid_split:
        valid, _ = split_file(params.data_path, params.valid_split, base_dir, "valid_split")
        out["validation"] = str(valid)
    template = params.chat_template
    if template not in TEMPLATES:
        raise TunesmithError(
            f"{yaml_key('chat_template')}={template!r} is not a chat template AutoTrain knows.",
            "Use none (plain text), tokenizer (the model's own), chatml or zephyr.",
            param=yaml_key("chat_template"),
        )
    if template in ("chatml", "zephyr"):
        note(
            "chat_template",
            f"tunesmith trains and serves with the model's own chat template (stored with the "
            f"fine-tuned model), not AutoTrain's {template} with its added special tokens.",
        )
    conversations = template not in NO_TEMPLATE
    columns = (params.text_column, params.rejected_text_column, params.prompt_text_column)
    if params.trainer in ("dpo", "orpo"):
        if not params.rejected_text_column:
            raise TunesmithError(
                f"The {params.trainer} trainer needs {yaml_key('rejected_text_column')} (and "
                f"{yaml_key('text_column')} for the chosen answer).",
                "Name the columns of the chosen and the rejected answers.",
                param=yaml_key("rejected_text_column"),
            )
        out["mapping"] = {"chosen": columns[0], "rejected": columns[1]}
        if conversations and columns[2]:
            # AutoTrain, with a template, takes the prompt from the chosen conversation.
            note(
                "prompt_text_column",
                "with a chat template, the prompt is the start that chosen and rejected share "
                "(AutoTrain takes chosen[:-1]); the prompt column is not read.",
                "info",
            )
        elif columns[2]:
            out["mapping"]["prompt"] = columns[2]
        return out
    if conversations:
        out["mapping"] = {"messages": columns[0]}
        if params.trainer == "sft":
            note(
                "trainer",
                "tunesmith puts the loss on the assistant's answers only (as OpenAI does); "
                "AutoTrain's SFT learns the whole rendered conversation.",
                "info",
            )
        else:
            note(
                "trainer",
                "the llm trainer on conversations: tunesmith puts the loss on the assistant's "
                "answers only, not on the whole rendered text.",
            )
    else:
        out["mapping"] = {"text": columns[0]}
        note(
            "text_column",
            f"{columns[0]!r} is read as plain text (chat_template: none), with no chat template "
            "and the loss on the whole text, as AutoTrain's llm trainer does.",
            "info",
        )
    return out


def split_file(data_path: str, split: str, base_dir: Path, param: str) -> tuple[Path, bool]:
    """Where a split's rows are: `{path}/{split}.csv|jsonl` as AutoTrain reads them (json and
    parquet too), a saved dataset's split folder, the saved dataset, or the file named (then
    True: the file holds everything, whatever the split)."""
    if ":" in split:
        raise TunesmithError(
            f"{yaml_key(param)}={split!r}: a dataset configuration (CONFIG:SPLIT) is a hub "
            "dataset's, and the hub is not used.",
            "Save that configuration's split locally and point data.path at it.",
            param=yaml_key(param),
        )
    given = Path(data_path).expanduser()
    candidates = [given] if given.is_absolute() else [base_dir / given, Path.cwd() / given]
    for folder in (c.resolve() for c in candidates):
        if folder.is_file():
            return folder, True
        if not folder.is_dir():
            continue
        for suffix in DATA_SUFFIXES:
            if (folder / f"{split}{suffix}").is_file():
                return folder / f"{split}{suffix}", False
        if (folder / split).is_dir():  # a DatasetDict saved with save_to_disk
            return folder / split, False
        if (folder / "dataset_info.json").is_file() or (folder / "state.json").is_file():
            return folder, True  # one saved Dataset
        raise TunesmithError(
            f"{yaml_key('data_path')}: {folder} has no {split}.csv or {split}.jsonl (the "
            f"{split!r} split, {yaml_key(param)}).",
            f"It holds: {', '.join(sorted(p.name for p in folder.iterdir())[:20]) or 'nothing'}. "
            "Name the split's file, or point data.path at a file or a saved dataset.",
            param=yaml_key(param),
        )
    hub = "/" in data_path and not data_path.startswith((".", "/", "~"))
    hint = (
        f"{data_path!r} looks like a hub dataset, and the hub is not used: save it first "
        f"(datasets.load_dataset({data_path!r}).save_to_disk('data') on a machine online), "
        "then point data.path at that folder."
        if hub
        else "Check the path; a relative one is read from the config file's folder, then from "
        "the current folder."
    )
    raise TunesmithError(
        f"{yaml_key('data_path')}: {data_path} does not exist.", hint, param=yaml_key("data_path")
    )
