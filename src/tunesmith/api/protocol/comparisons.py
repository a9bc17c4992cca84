"""The comparison resource (a tunesmith extension): `tunesmith compare` run as a job."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunesmith.api.protocol.common import OpenAIRequest
from tunesmith.evals.metrics import MetricName


class ComparisonCreate(OpenAIRequest):
    training_file: str = Field(description="File id (purpose fine-tune): the demonstrations' pool.")
    test_file: str = Field(description="File id of the held-out examples.")
    model: str = "smollm2-135m-instruct"
    fine_tuned_model: str | None = Field(default=None, description="One ft: model to compare.")
    fine_tuned_models: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Several ft: models (SFT and DPO, checkpoints), ranked; instead of "
        "fine_tuned_model.",
    )
    train_now: bool = False
    shots: int = Field(default=3, ge=0, le=32)
    metric: Literal["auto", MetricName] = "auto"
    limit: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    probes: bool = True
    learning_curve: bool = Field(
        default=False,
        description="Also train on nested 12.5%, 25% and 50% subsets of the training file and "
        "say whether more data would help (trains the full model too unless one is given).",
    )
    seed: int = Field(default=0, ge=0)

    def fine_tuned(self) -> list[str]:
        """The models to compare, whichever field holds them."""
        if self.fine_tuned_models is not None:
            return self.fine_tuned_models
        return [self.fine_tuned_model] if self.fine_tuned_model else []
