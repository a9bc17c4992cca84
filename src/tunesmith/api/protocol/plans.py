"""Schemas of the training-method catalogue and of a job's plan (tunesmith extensions): what the
new-job form is built from, and what it shows before a launch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class MethodField(BaseModel):
    """One setting of a method's config, as the CLI flag and the YAML key name it."""

    name: str = Field(description="The setting's name as a flag parameter: `lora_r`.")
    path: list[str] = Field(description="Its keys in the config and YAML: ['lora', 'r'].")
    flag: str = Field(description="Its `tunesmith train` flag: `--lora-r`.")
    kind: Literal["bool", "int", "float", "choice", "list", "mapping", "object", "path", "string"]
    choices: list[str] = Field(description="Allowed words (`auto` among them where allowed).")
    auto: bool = Field(description='Whether "auto" is allowed (resolved against the data).')
    default: Any
    description: str
    group: str = Field(description="The heading it belongs under: How, Watching, Speed, …")


class TrainingMethod(BaseModel):
    name: str = Field(description="sft, dpo, orpo, kto or grpo (`config.method`).")
    description: str
    data_kind: str = Field(description="The examples it reads: supervised, dpo, kto, …")
    openai_type: str = Field(description="OpenAI's `method.type` it is created with.")
    fields: list[MethodField]


class TrainingMethodList(BaseModel):
    object: Literal["list"] = "list"
    data: list[TrainingMethod]


class Estimate(BaseModel):
    """What the run costs, from the data check's token counts (`tunesmith data check`'s)."""

    examples: int
    validation_examples: int | None
    epochs: int
    tokens: int = Field(description="Tokens trained on per epoch (each example up to max_length).")
    billed_tokens: int = Field(description="epochs × tokens, OpenAI's billing rule.")
    tokens_per_second: float = Field(description="This machine's assumed training throughput.")
    seconds: float = Field(description="Estimated training time here.")
    total_steps: int


class Plan(BaseModel):
    """A job before it exists. `ok` false: the data has errors, listed in `report`, and there is
    no estimate (the answer is still 200, so a form can show them)."""

    object: Literal["fine_tuning.plan"] = "fine_tuning.plan"
    ok: bool
    config: dict[str, Any] = Field(description="The job's config as it would be stored.")
    resolved: dict[str, Any] | None = Field(
        description='What each "auto" resolves to: epochs, batch_size, learning_rate, '
        "eval_steps, steps_per_epoch, total_steps."
    )
    estimate: Estimate | None
    report: dict[str, Any] = Field(description="The data check's report: errors, warnings, stats.")
    command: str = Field(description="The `tunesmith train` command that trains the same job.")
    yaml: str = Field(description="The same settings as a --config YAML file.")


class JobControls(BaseModel):
    """Which job statuses each control is legal from, and which statuses are final."""

    object: Literal["fine_tuning.controls"] = "fine_tuning.controls"
    cancel: list[str]
    pause: list[str]
    resume: list[str]
    final: list[str] = Field(description="A job in one of these changes no more.")
