"""What a run reports as it goes: OpenAI's event texts, and a progress snapshot for live displays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Progress:
    """One optimizer step, as the CLI bar and the API's live views show it."""

    step: int
    total_steps: int
    epoch: float
    train_loss: float
    train_accuracy: float
    tokens_per_second: float
    elapsed: float
    valid_loss: float | None = None

    @property
    def eta(self) -> float:
        return self.elapsed / max(self.step, 1) * (self.total_steps - self.step)


ProgressFn = Callable[[Progress], None]
# Returns "cancel" or "pause" when the run should stop at the next step boundary, else None.
StopFn = Callable[[], "str | None"]


def step_message(data: dict) -> str:
    """OpenAI's metrics text: `Step 12/90: training loss=0.53, validation loss=0.61`."""
    text = f"Step {data['step']}/{data['total_steps']}: training loss={data['train_loss']:.2f}"
    if "full_valid_loss" in data:
        text += f", full validation loss={data['full_valid_loss']:.2f}"
    elif "valid_loss" in data:
        text += f", validation loss={data['valid_loss']:.2f}"
    # GRPO: the grader's mean reward says more than its loss does
    if "train_reward" in data:
        text += f", reward={data['train_reward']:.2f}"
    for prefix, name in (("full_valid", "full validation"), ("valid", "validation")):
        if f"{prefix}_reward" in data:
            text += f", {name} reward={data[f'{prefix}_reward']:.2f}"
            break
    return text


CREATED = "Created fine-tuning job: {job_id}"
VALIDATING = "Validating training file: {training}"
VALIDATING_BOTH = "Validating training file: {training} and validation file: {validation}"
VALIDATED = "Files validated, moving job to queued state"
VALIDATED_CLAIMED = "Files validated; the job runs in the process that submitted it"
STOPPED_AFTER_LAST_STEP = (
    "The job was {status} after its last step; its final model was not registered "
    "(its checkpoints stay callable)"
)
STARTED = "Fine-tuning job started"
CHECKPOINT = "Checkpoint created at step {step} with Snapshot ID: {name}"
MODEL_CREATED = "New fine-tuned model created: {name}"
SUCCEEDED = "The job has successfully completed"
CANCELLED = "Fine-tuning job cancelled at step {step}; checkpoint kept: {name}"
PAUSED = "Fine-tuning job paused at step {step}; resume continues from {name}"
REQUEUED = "The server is stopping; the job goes back to the queue and resumes from step {step}"
RESUMED = "Fine-tuning job resumed from step {step}"
GRADER_FAILED = "Grader failed on {n} of {total} answers (each scored 0): {reason}"
REFERENCE_READY = (
    "Reference log-probabilities ready for {n} training examples ({seconds:.1f} s; computed once, "
    "read back on resume)"
)
FAILED = "Fine-tuning job failed: {reason}"
