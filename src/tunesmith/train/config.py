"""The SFT run config: one pydantic model backs the CLI flags, the YAML file and the API.

Precedence is defaults < YAML < flags. Every field has a default that works on a CPU laptop; the
"auto" values are resolved in one place, `resolve`, once the data is known.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tunesmith.data.stats import auto_epochs
from tunesmith.errors import TunesmithError
from tunesmith.models.catalog import DEFAULT_MODEL

Auto = Literal["auto"]

# Learning rates that "auto" resolves to, per method; OpenAI's learning_rate_multiplier scales them.
# LoRA learns at ~10x the rate of a full fine-tune of the same model (PEFT/TRL recipes use 1e-4..4e-4).
BASE_LEARNING_RATE = {"lora": 4e-4, "full": 4e-5}


class LoraSettings(BaseModel):
    """PEFT's LoraConfig, under PEFT's own names."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=16, ge=1, le=1024, description="LoRA rank: adapter size and capacity.")
    lora_alpha: int | None = Field(
        default=None, ge=1, description="LoRA scaling numerator; usually 2*r (None means 2*r)."
    )
    lora_dropout: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout on the adapter input. 0 by default: its masks cost ~22% of a CPU step.",
    )
    target_modules: list[str] | Literal["all-linear"] = Field(
        default="all-linear", description="Layers that get adapters: 'all-linear' or module names."
    )


class SFTConfig(BaseModel):
    """Supervised fine-tuning of one model on one chat dataset."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # What to train on
    data: Path | None = Field(
        default=None, description="Training file (chat JSONL or another format)."
    )
    validation: Path | None = Field(default=None, description="Validation file, same formats.")
    mapping: dict[str, str] | None = Field(
        default=None, description="CSV/Parquet columns for system, user and assistant."
    )
    model: str = Field(default=DEFAULT_MODEL, description="Base model name, folder or ft: model.")
    suffix: str | None = Field(default=None, description="Up to 64 characters in the model name.")

    # How
    method: Literal["lora", "full"] = Field(
        default="lora", description="lora trains small adapters; full updates every weight."
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)
    epochs: int | Auto = Field(
        default="auto", description="Passes over the data; auto: OpenAI's rule."
    )
    batch_size: int | Auto = Field(default="auto", description="Examples per optimizer step.")
    learning_rate: float | Auto = Field(
        default="auto", description="Peak learning rate; auto: 4e-4 for lora, 4e-5 for full."
    )
    lr_scheduler: Literal["linear", "cosine", "constant"] = Field(
        default="linear", description="Learning-rate decay after warm-up."
    )
    warmup_ratio: float = Field(
        default=0.03, ge=0.0, lt=1.0, description="Share of steps warming up."
    )
    weight_decay: float = Field(default=0.0, ge=0.0, description="AdamW weight decay.")
    max_length: int = Field(
        default=1024, ge=16, description="Longest example in tokens; longer ones are truncated."
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed for shuffling and init.")

    # Watching
    eval_steps: int | Auto = Field(
        default="auto", description="Validation loss every N steps; auto: about 10 times per run."
    )
    early_stopping_patience: int | None = Field(
        default=None,
        ge=1,
        description="Stop after N validations without improvement (None: never).",
    )

    # Speed (the defaults are the fast ones)
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where to train.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="auto: bf16 autocast where the chip has bf16 units, else fp32."
    )
    packing: bool = Field(
        default=True,
        description="Pack a batch into one row without attention across examples (no padding).",
    )
    pack_row_tokens: int = Field(
        default=1024,
        ge=64,
        description="Longest packed row in tokens: attention costs a row's length squared.",
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Trade ~30% more compute for less activation memory."
    )
    load_in_4bit: bool = Field(
        default=False, description="QLoRA: 4-bit base weights (needs a CUDA GPU and bitsandbytes)."
    )

    @field_validator("epochs", "batch_size", "eval_steps")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if value != "auto" and value < 1:
            raise ValueError("must be 'auto' or an integer of at least 1")
        return value

    @field_validator("learning_rate")
    @classmethod
    def _positive_rate(cls, value: float | str) -> float | str:
        if value != "auto" and not (0 < value < 1):
            raise ValueError("must be 'auto' or a number between 0 and 1 (e.g. 2e-4)")
        return value


def _flatten(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Every settable key as a dotted path, for did-you-mean on unknown keys."""
    keys: dict[str, str] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.update(_flatten(annotation, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = info.description or ""
    return keys


def config_error(exc: ValidationError, source: str) -> TunesmithError:
    """One readable paragraph from pydantic's errors: the field, the value, what is allowed."""
    known = list(_flatten(SFTConfig))
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("int", "literal")))
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(field, known, n=1, cutoff=0.5)
            tip = f" Did you mean {close[0]!r}?" if close else ""
            parts.append(f"{field!r} is not a setting.{tip}")
        else:
            parts.append(f"{field}={err.get('input')!r}: {err['msg']}.")
    return TunesmithError(
        f"Invalid training config ({source}): " + " ".join(dict.fromkeys(parts)),
        "`tunesmith train --help` lists every setting with its allowed values.",
        param=exc.errors()[0]["loc"][0] if exc.errors() else None,
    )


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> SFTConfig:
    """Defaults < YAML file < overrides (flags), validated once."""
    values: dict[str, Any] = {}
    source = "flags"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TunesmithError(f"Config file {path} does not exist.", param="config") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise TunesmithError(
                f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}).", param="config"
            ) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise TunesmithError(f"{path}: the config must be a mapping of settings.")
        values = loaded or {}
        # Relative data paths in a YAML file are relative to the file, not to the shell.
        for key in ("data", "validation"):
            if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                values[key] = str(Path(path).parent / values[key])
    values = _merge(values, overrides or {})
    try:
        return SFTConfig.model_validate(values)
    except ValidationError as exc:
        raise config_error(exc, source) from None


def dump_yaml(config: SFTConfig) -> str:
    """The config as YAML, with the command that runs it first (the torchtune habit)."""
    data = config.model_dump(mode="json", exclude_none=True)
    return "# tunesmith train --config THIS_FILE\n" + yaml.safe_dump(data, sort_keys=False)


# --- "auto" resolved, the way OpenAI resolves it where OpenAI documents a rule ---------------------


def auto_batch_size(n_examples: int) -> int:
    """A power of two near n/32, between 1 and 8.

    OpenAI does not publish its rule (it picked 1 for the cookbook's 101 examples). On a CPU, bigger
    batches make fuller matrix products, but each epoch should still give ~30 optimizer steps.
    """
    target = max(1, n_examples // 32)
    return min(8, 2 ** int(math.log2(target)))


class Resolved(BaseModel):
    """The numbers a run actually uses once "auto" is resolved against the data."""

    epochs: int
    batch_size: int
    learning_rate: float
    eval_steps: int
    steps_per_epoch: int
    total_steps: int


def resolve(config: SFTConfig, n_examples: int) -> Resolved:
    epochs = auto_epochs(n_examples) if config.epochs == "auto" else config.epochs
    batch = auto_batch_size(n_examples) if config.batch_size == "auto" else config.batch_size
    batch = min(batch, n_examples)
    rate = (
        BASE_LEARNING_RATE[config.method]
        if config.learning_rate == "auto"
        else config.learning_rate
    )
    steps_per_epoch = math.ceil(n_examples / batch)
    total = steps_per_epoch * epochs
    evals = max(1, total // 10) if config.eval_steps == "auto" else config.eval_steps
    return Resolved(
        epochs=epochs,
        batch_size=batch,
        learning_rate=rate,
        eval_steps=evals,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
    )
