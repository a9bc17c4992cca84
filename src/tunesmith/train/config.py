"""The run configs: one pydantic model per training method backs the CLI flags, the YAML file and
the API. `SFTConfig` holds what every method shares; DPO, ORPO, KTO and GRPO add their own
settings under TRL's names (`beta`, `loss_type`, ...), told apart by `method`.

Precedence is defaults < YAML < flags. Every field has a default that works on a CPU laptop; the
"auto" values are resolved in one place, `resolve`, once the data is known.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from tunesmith.data.stats import auto_epochs
from tunesmith.errors import TunesmithError
from tunesmith.models.catalog import DEFAULT_MODEL
from tunesmith.train import autotrain
from tunesmith.train.autotrain import Note

Auto = Literal["auto"]

Method = Literal["sft", "dpo", "orpo", "kto", "grpo"]
Tuning = Literal["lora", "full"]
# Learning rates that "auto" resolves to; OpenAI's learning_rate_multiplier scales them. LoRA
# learns at ~10x the rate of a full fine-tune of the same model (PEFT/TRL recipes use 1e-4..4e-4).
# Preference and RL objectives push on log-ratios that move fast: ~10x lower than SFT (TRL's DPO
# recipes use 5e-7..5e-6 full, 5e-6..5e-5 LoRA; a tiny CPU run needs the top of that range).
BASE_LEARNING_RATE: dict[str, dict[str, float]] = {
    "sft": {"lora": 4e-4, "full": 4e-5},
    "dpo": {"lora": 5e-5, "full": 5e-6},
    "orpo": {"lora": 1e-4, "full": 1e-5},
    "kto": {"lora": 5e-5, "full": 5e-6},
    "grpo": {"lora": 5e-5, "full": 5e-6},
}


def base_learning_rate(config: SFTConfig) -> float:
    """What learning_rate "auto" (and a multiplier of 1) means for this method and tuning."""
    return BASE_LEARNING_RATE[config.method][config.tuning]


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
    """Supervised fine-tuning of one model on one chat dataset; the settings every method shares."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # What the method reads and how OpenAI names it (its `method.type`):
    data_kind: ClassVar[str] = "supervised"  # the kind of examples data.checks expects
    data_format: ClassVar[str] = "auto"  # how data.read reads the files
    openai_type: ClassVar[str] = "supervised"

    method: Literal["sft"] = Field(
        default="sft",
        description="sft copies answers; dpo, orpo, kto learn from preferences; grpo from a grader.",
    )

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
    tuning: Tuning = Field(
        default="lora", description="lora trains small adapters; full updates every weight."
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)
    epochs: int | Auto = Field(
        default="auto", description="Passes over the data; auto: OpenAI's rule."
    )
    batch_size: int | Auto = Field(default="auto", description="Examples per optimizer step.")
    learning_rate: float | Auto = Field(
        default="auto",
        description="Peak learning rate; auto: per method and tuning (sft: 4e-4 lora, 4e-5 full).",
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
    gradient_accumulation_steps: int = Field(
        default=1,
        ge=1,
        description="Micro-batches per optimizer step: same batch_size, less memory per pass.",
    )

    # Processes (torchrun; train/distributed.py). batch_size stays the examples per optimizer
    # step: each of the nnodes*nproc ranks trains batch_size/(ranks*accumulation) per pass.
    nproc: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Processes on this machine, through torchrun: one per GPU (gloo on a CPU).",
    )
    nnodes: int = Field(default=1, ge=1, description="Machines in the run (torchrun --nnodes).")
    node_rank: int = Field(default=0, ge=0, description="This machine's rank (torchrun).")
    master_addr: str = Field(default="127.0.0.1", description="Rank 0's machine (torchrun).")
    master_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Rank 0's port (torchrun); None: a free one on one machine, 29500 on many.",
    )
    accelerate_config: str | None = Field(
        default=None,
        description="Launch through `accelerate launch` with TRL's config NAME (multi_gpu, "
        "zero1, zero2, zero3, fsdp1, fsdp2) or a YAML FILE: FSDP and DeepSpeed, on GPUs.",
    )

    @model_validator(mode="before")
    @classmethod
    def _tuning_was_method(cls, values: Any) -> Any:
        return _tuning_from_old_method(values)

    @model_validator(mode="after")
    def _processes(self) -> SFTConfig:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be below nnodes {self.nnodes}")
        # Only SFT's trainer is checked to train N processes (or N accumulated micro-batches)
        # like one (tests/train/test_distributed.py); the preference pass and GRPO's sampler
        # would each run once per process.
        split = self.world_size > 1 or self.gradient_accumulation_steps > 1
        if split and self.method != "sft":
            raise ValueError(
                f"nproc, nnodes and gradient_accumulation_steps above 1 train method sft only, "
                f"not {self.method}"
            )
        return self

    @property
    def world_size(self) -> int:
        """Training processes over all machines."""
        return self.nproc * self.nnodes

    @field_validator("accelerate_config")
    @classmethod
    def _known_accelerate_config(cls, value: str | None) -> str | None:
        if value is not None:
            from tunesmith.train.distributed import accelerate_config_path

            accelerate_config_path(value)  # raises ValueError naming the choices
        return value

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


def _tuning_from_old_method(values: Any) -> Any:
    """Configs written before preference tuning said `method: lora|full`; they still run."""
    if isinstance(values, dict) and values.get("method") in ("lora", "full"):
        values = dict(values)
        values.setdefault("tuning", values["method"])
        values["method"] = "sft"
    return values


class DPOConfig(SFTConfig):
    """Direct preference optimisation on pairs: raise the preferred answer's log-probability
    relative to the rejected one's, measured against the model as it was when training began."""

    data_kind: ClassVar[str] = "dpo"
    openai_type: ClassVar[str] = "dpo"
    method: Literal["dpo"] = "dpo"  # type: ignore[assignment]
    beta: float = Field(
        default=0.1,
        gt=0,
        description="How far from the reference the model may move: higher stays closer.",
    )
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field(
        default="sigmoid", description="sigmoid: the DPO paper's; ipo and hinge: its variants."
    )
    label_smoothing: float = Field(
        default=0.0,
        ge=0.0,
        lt=0.5,
        description="Share of pairs assumed mislabelled (conservative DPO); sigmoid loss only.",
    )


class ORPOConfig(SFTConfig):
    """Odds-ratio preference optimisation: SFT on the preferred answer plus a term that lowers
    the odds of the rejected one. No reference model, so no reference pass."""

    data_kind: ClassVar[str] = "dpo"
    openai_type: ClassVar[str] = "dpo"
    method: Literal["orpo"] = "orpo"  # type: ignore[assignment]
    beta: float = Field(
        default=0.1, gt=0, description="Weight of the odds-ratio term against the SFT loss."
    )


class KTOConfig(SFTConfig):
    """Kahneman-Tversky optimisation on single answers labelled good or bad (pairs split)."""

    data_kind: ClassVar[str] = "kto"
    openai_type: ClassVar[str] = "dpo"
    method: Literal["kto"] = "kto"  # type: ignore[assignment]
    beta: float = Field(
        default=0.1, gt=0, description="How far from the reference the model may move."
    )
    desirable_weight: float = Field(
        default=1.0, gt=0, description="Loss weight of good answers (raise it if they are rarer)."
    )
    undesirable_weight: float = Field(default=1.0, gt=0, description="Loss weight of bad answers.")


class GRPOConfig(SFTConfig):
    """Reinforcement fine-tuning with a grader (OpenAI's `reinforcement` method), by TRL's GRPO:
    several answers per prompt, each scored, pushed towards the better-than-average ones."""

    data_kind: ClassVar[str] = "reinforcement"
    openai_type: ClassVar[str] = "reinforcement"
    data_format: ClassVar[str] = "rft"  # an RFT line looks like a chat line: never guessed
    method: Literal["grpo"] = "grpo"  # type: ignore[assignment]
    grader: dict[str, Any] | None = Field(
        default=None,
        description="OpenAI grader JSON; on the command line a .json file, or a .py file "
        "defining grade(sample, item) -> float.",
    )
    num_generations: int = Field(
        default=4, ge=2, le=64, description="Answers sampled per prompt and compared."
    )
    max_completion_length: int = Field(
        default=64, ge=1, description="Longest sampled answer in tokens."
    )
    temperature: float = Field(default=1.0, gt=0, le=2, description="Sampling temperature.")
    beta: float = Field(
        default=0.0, ge=0, description="KL penalty to the reference model (0: none, TRL's default)."
    )
    sampler: Literal["tunesmith", "trl"] = Field(
        default="tunesmith",
        description="Who samples the answers: tunesmith's running batch, or TRL's generate().",
    )

    @field_validator("grader", mode="before")
    @classmethod
    def _grader_file(cls, value: Any) -> Any:
        return load_grader_file(value) if isinstance(value, str | Path) else value


METHOD_CONFIGS: dict[str, type[SFTConfig]] = {
    "sft": SFTConfig,
    "dpo": DPOConfig,
    "orpo": ORPOConfig,
    "kto": KTOConfig,
    "grpo": GRPOConfig,
}
TrainConfig = Annotated[
    SFTConfig | DPOConfig | ORPOConfig | KTOConfig | GRPOConfig, Field(discriminator="method")
]
_TRAIN_CONFIG: TypeAdapter[SFTConfig] = TypeAdapter(TrainConfig)


def parse_config(values: dict[str, Any]) -> SFTConfig:
    """The config of the method `values` names (sft when none); raises pydantic's error."""
    values = _tuning_from_old_method(values)
    if isinstance(values, dict) and "method" not in values:
        values = {**values, "method": "sft"}
    return _TRAIN_CONFIG.validate_python(values)


def load_grader_file(path: str | Path) -> dict[str, Any]:
    """A grader from a file: OpenAI grader JSON, or a Python file defining `grade(sample, item)`
    (made into OpenAI's python grader, so the job carries its code and not a path)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the grader file {path}: {exc}") from None
    if path.suffix == ".py":
        return {"type": "python", "name": path.stem, "source": text}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: a grader is a JSON object with a 'type'")
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


def did_you_mean(
    key: str, known: list[str] | tuple[str, ...], aliases: dict[str, str] | None = None
) -> str:
    """` Did you mean 'x'?` for the closest known key, or nothing when none is close.
    `aliases` maps other tools' names of a setting to its name here."""
    names = {name: name for name in known} | (aliases or {})
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.5)
    return f" Did you mean {names[close[0]]!r}?" if close else ""


def config_error(exc: ValidationError, source: str) -> TunesmithError:
    """One readable paragraph from pydantic's errors: the field, the value, what is allowed."""
    known: dict[str, list[str]] = {}  # key -> the methods that have it
    for name, model in METHOD_CONFIGS.items():
        for key in _flatten(model):
            known.setdefault(key, []).append(name)
    parts, params = [], []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("int", "literal"))]
        method = loc.pop(0) if loc and loc[0] in METHOD_CONFIGS else "sft"  # the union's tag
        field = ".".join(loc)
        params.append(loc[0] if loc else "method")
        if err["type"] == "union_tag_invalid":
            parts.append(
                f"method={err['input'].get('method')!r} is not a method; the methods are "
                f"{', '.join(METHOD_CONFIGS)}."
            )
        elif err["type"] == "extra_forbidden" and field in known:
            owners = ", ".join(known[field])
            parts.append(
                f"{field!r} is a setting of {owners}, not of {method}; choose the method with "
                f"--method {known[field][0]} (method: {known[field][0]} in YAML)."
            )
        elif err["type"] == "extra_forbidden":
            parts.append(f"{field!r} is not a setting.{did_you_mean(field, list(known))}")
        elif not field:  # a rule between settings (a model validator): its message says it
            parts.append(f"{err['msg'].removeprefix('Value error, ')}.")
        else:
            parts.append(f"{field}={err.get('input')!r}: {err['msg']}.")
    return TunesmithError(
        f"Invalid training config ({source}): " + " ".join(dict.fromkeys(parts)),
        "`tunesmith train --help` lists every setting with its allowed values.",
        param=params[0] if params else None,
    )


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    strict: bool = False,
    notes: list[Note] | None = None,
) -> SFTConfig:
    """Defaults < YAML file < overrides (flags), validated once.

    An AutoTrain Advanced config (told by its `task` or `base_model`) is translated first; what
    became of its settings is appended to `notes`, and `strict` refuses the settings it can
    only approximate.
    """
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
        if autotrain.is_autotrain(values):
            translation = autotrain.from_yaml(values, Path(path), strict=strict)
            values = translation.values
            if notes is not None:
                notes.append(autotrain.detected(path, translation))
                notes.extend(translation.notes)
        # Relative paths in a YAML file are relative to the file, not to the shell.
        for key in ("data", "validation", "grader"):
            if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                values[key] = str(Path(path).parent / values[key])
    values = _merge(values, overrides or {})
    try:
        return parse_config(values)
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
    micro_batch_size: int = 1  # examples per rank per forward pass


def resolve(config: SFTConfig, n_examples: int) -> Resolved:
    epochs = auto_epochs(n_examples) if config.epochs == "auto" else config.epochs
    batch = auto_batch_size(n_examples) if config.batch_size == "auto" else config.batch_size
    batch = min(batch, n_examples)
    # Every rank and micro-batch takes an equal share of the step's batch, so N processes (or
    # N accumulated passes) see the very examples one process would see in one pass.
    shares = config.world_size * config.gradient_accumulation_steps
    if config.batch_size == "auto":
        batch = math.ceil(batch / shares) * shares
    elif batch % shares:
        raise TunesmithError(
            f"batch_size {batch} does not split into {config.world_size} process(es) x "
            f"{config.gradient_accumulation_steps} accumulation step(s).",
            f"Choose a batch_size that is a multiple of {shares}.",
            param="batch_size",
        )
    rate = base_learning_rate(config) if config.learning_rate == "auto" else config.learning_rate
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
        micro_batch_size=batch // shares,
    )
