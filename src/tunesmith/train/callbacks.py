"""The Trainer callback that turns a run into events, metrics, checkpoints and progress."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from transformers import TrainerCallback

from tunesmith.train import events as ev
from tunesmith.train import rank

if TYPE_CHECKING:
    from tunesmith.train.run import RunContext
    from tunesmith.train.trainer import TunesmithSFTTrainer


class RunCallback(TrainerCallback):
    """Collects one metrics record per optimizer step and writes it once it is complete.

    The Trainer's order within a step is: step end → log → evaluate → save. A step's record is
    written when its checkpoint is saved or the next step ends, so it carries the validation
    numbers of its own step. On the last step the validation set is swapped for the full one.
    """

    def __init__(self, run: RunContext) -> None:
        self.run = run
        self.trainer: TunesmithSFTTrainer | None = None
        self.pending: dict | None = None
        self.started = time.monotonic()
        self.first_step = 0
        self.step_started = time.monotonic()
        self.tokens = 0
        self.stop_reason: str | None = None
        self.best_valid: float | None = None
        self.bad_evals = 0

    # --- steps -----------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self.first_step, self.started = state.global_step, time.monotonic()

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self.flush()
        stats = self.trainer.take_train_stats()
        self.tokens += stats.seen_tokens
        elapsed = time.monotonic() - self.started
        self.pending = {
            "step": state.global_step,
            "total_steps": state.max_steps,
            **{f"train_{name}": value for name, value in stats.metrics().items()},
            "epoch": round(state.epoch or 0.0, 4),
            "tokens_per_second": self.tokens / max(elapsed, 1e-9),
            # this step alone: wall time, tokens through the model, tokens scored
            "step_seconds": time.monotonic() - self.step_started,
            "tokens": stats.seen_tokens,
            "scored_tokens": stats.tokens,
        }
        if state.global_step >= state.max_steps and self.run.full_eval_dataset is not None:
            self.trainer.eval_dataset = self.run.full_eval_dataset
            self.run.final_eval = True
            control.should_evaluate = True
        self.run.report(
            ev.Progress(
                step=state.global_step,
                total_steps=state.max_steps,
                epoch=state.epoch or 0.0,
                train_loss=stats.loss,
                train_accuracy=stats.accuracy,
                tokens_per_second=self.pending["tokens_per_second"],
                elapsed=elapsed,
                valid_loss=self.run.last_valid_loss,
            ),
            steps_done=state.global_step - self.first_step,
        )
        # Rank 0 decides and every rank hears it here, so all stop after the same step.
        self.stop_reason = rank.agree_on_stop(self.run.stop_requested(), args.device)
        if self.stop_reason and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        stats = self.trainer.take_eval_stats()
        numbers = stats.metrics()
        # A GRPO validation samples and grades answers: it has a reward, no loss.
        self.run.last_valid_loss = numbers.get("loss")
        if self.pending is not None:
            prefix = "full_valid" if self.run.final_eval else "valid"
            self.pending.update({f"{prefix}_{k}": v for k, v in numbers.items()})
        patience = self.run.config.early_stopping_patience
        if patience is not None and not self.run.final_eval and "loss" in numbers:
            if self.best_valid is None or stats.loss < self.best_valid:
                self.best_valid, self.bad_evals = stats.loss, 0
            else:
                self.bad_evals += 1
                if self.bad_evals >= patience:
                    self.run.early_stopped = state.global_step
                    control.should_save = True
                    control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.flush()
        self.run.checkpoint_saved(state.global_step, self.last_metrics)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.flush()
        return control

    # --- writing ---------------------------------------------------------------------------------
    last_metrics: dict = {}  # noqa: RUF012 - replaced, never mutated

    def flush(self) -> None:
        if self.pending is None:
            return
        self.run.metrics(self.pending)
        self.last_metrics = {
            k: v
            for k, v in self.pending.items()
            if k.startswith(("step", "train_", "valid_", "full_valid_"))
        }
        self.pending = None
