"""Fine-tuning schemas: the create request (OpenAI's fields, then tunesmith's `config`), the job,
its events and checkpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, field_validator

from tunesmith.api.protocol.common import ListPage, OpenAIRequest

METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512


def _auto_or(kind: type, *, low: float, high: float | None = None, low_open: bool = False):
    """`"auto"` or a number in range, checked as one field (so an error names the field itself,
    not one arm of a union)."""
    bounds = f"greater than {low}" if low_open else f"from {low}"
    bounds += f" to {high}" if high is not None else ""
    noun = "an integer" if kind is int else "a number"

    def check(value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be 'auto' or {noun} {bounds}")
        if kind is int:
            if not float(value).is_integer():
                raise ValueError(f"must be 'auto' or {noun} {bounds}")
            value = int(value)
        too_low = value <= low if low_open else value < low
        if too_low or (high is not None and value > high):
            raise ValueError(f"must be 'auto' or {noun} {bounds}; got {value}")
        return value

    number: dict[str, Any] = {"type": "integer" if kind is int else "number"}
    number["exclusiveMinimum" if low_open else "minimum"] = low
    if high is not None:
        number["maximum"] = high
    schema = {"anyOf": [{"type": "string", "enum": ["auto"]}, number], "default": "auto"}
    return Annotated[Any, PlainValidator(check), WithJsonSchema(schema)]


NEpochs = _auto_or(int, low=1, high=50)
BatchSize = _auto_or(int, low=1, high=256)
LearningRateMultiplier = _auto_or(float, low=0, low_open=True)
Beta = _auto_or(float, low=0, low_open=True)
ComputeMultiplier = _auto_or(float, low=0, low_open=True)
EvalInterval = _auto_or(int, low=1)
EvalSamples = _auto_or(int, low=1)


# --- the create request ---------------------------------------------------------------------------


class Hyperparameters(BaseModel):
    """Each "auto" (the default) or a number; resolved against the data when training starts."""

    # Unknown keys are refused here, unlike elsewhere: a typo (`n_epoch`) must not silently
    # train with the default.
    model_config = ConfigDict(extra="forbid")

    batch_size: BatchSize = "auto"
    learning_rate_multiplier: LearningRateMultiplier = "auto"
    n_epochs: NEpochs = "auto"


class SupervisedMethod(OpenAIRequest):
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class DpoHyperparameters(Hyperparameters):
    beta: Beta = "auto"


class DpoMethod(OpenAIRequest):
    hyperparameters: DpoHyperparameters = Field(default_factory=DpoHyperparameters)


class ReinforcementHyperparameters(Hyperparameters):
    """OpenAI's RFT settings. compute_multiplier scales the answers sampled per prompt;
    eval_interval, eval_samples and reasoning_effort are accepted and recorded (tunesmith's GRPO
    has no periodic sampled evaluation, and the built-in models do not reason)."""

    compute_multiplier: ComputeMultiplier = "auto"
    eval_interval: EvalInterval = "auto"
    eval_samples: EvalSamples = "auto"
    reasoning_effort: Literal["default", "low", "medium", "high"] = "default"


class ReinforcementMethod(OpenAIRequest):
    grader: dict[str, Any] = Field(description="An OpenAI grader: string_check, python, multi, …")
    hyperparameters: ReinforcementHyperparameters = Field(
        default_factory=ReinforcementHyperparameters
    )


class Method(OpenAIRequest):
    """`{"type": "supervised" | "dpo" | "reinforcement", <type>: {"hyperparameters": {...}}}`.

    `dpo` trains DPO, or ORPO or KTO when `config.method` says so (an extension, sent with the
    SDK's extra_body); `reinforcement` trains GRPO with `reinforcement.grader` as the reward."""

    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None
    reinforcement: ReinforcementMethod | None = None


class CreateFineTuningJob(OpenAIRequest):
    model: str = Field(description="A base model name, or an ft: model to train further.")
    training_file: str = Field(description="Id of a file uploaded with purpose fine-tune.")
    hyperparameters: Hyperparameters | None = Field(
        default=None, description="Deprecated by OpenAI: use method.supervised.hyperparameters."
    )
    suffix: str | None = Field(
        default=None, max_length=64, description="Up to 64 characters in the model name."
    )
    validation_file: str | None = None
    integrations: list[dict[str, Any]] | None = Field(
        default=None, max_length=5, description="Accepted and ignored (no W&B here)."
    )
    seed: int | None = Field(default=None, ge=0, le=2147483647)
    method: Method | None = None
    metadata: dict[str, str] | None = Field(
        default=None, description="Up to 16 pairs; keys ≤ 64, values ≤ 512 characters."
    )

    # --- tunesmith extension (send it with the SDK's extra_body) --------------------------------
    config: dict[str, Any] | None = Field(
        default=None,
        description="tunesmith: more settings of the method's config, e.g. "
        '{"tuning": "full", "lora": {"r": 8}, "max_length": 512}, or {"method": "orpo"} with '
        "method.type dpo.",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > METADATA_MAX_PAIRS:
            raise ValueError(f"at most {METADATA_MAX_PAIRS} pairs; got {len(value)}")
        for key, item in value.items():
            if len(key) > METADATA_KEY_MAX:
                raise ValueError(f"key {key[:20]!r}… is over {METADATA_KEY_MAX} characters")
            if len(item) > METADATA_VALUE_MAX:
                raise ValueError(
                    f"the value of {key!r} is longer than {METADATA_VALUE_MAX} characters"
                )
        return value


# --- responses ------------------------------------------------------------------------------------


class JobError(BaseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = Field(default=None, description="training_file or validation_file.")


JobStatus = Literal[
    "validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"
]


class FineTuningJob(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(description="ftjob-…")
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = Field(default=None, description="Set once succeeded.")
    finished_at: int | None = None
    hyperparameters: dict[str, Any] = Field(
        description='n_epochs, batch_size, learning_rate_multiplier: "auto" until training starts.'
    )
    model: str
    organization_id: str
    result_files: list[str] = Field(default_factory=list)
    seed: int
    status: JobStatus
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any] | None = None
    user_provided_suffix: str | None = None


class FineTuningJobList(ListPage):
    data: list[FineTuningJob]


class FineTuningJobEvent(BaseModel):
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    id: str = Field(description="ftevent-…")
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None


class FineTuningJobEventList(ListPage):
    data: list[FineTuningJobEvent]


class FineTuningJobCheckpoint(BaseModel):
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    id: str = Field(description="ftckpt_…")
    created_at: int
    fine_tuned_model_checkpoint: str = Field(description="ft:…:ckpt-step-N, callable as a model.")
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, Any] = Field(default_factory=dict, description="step, train_loss, …")


class FineTuningJobCheckpointList(ListPage):
    data: list[FineTuningJobCheckpoint]
