"""TRL's SFTTrainer with a loss that runs the output head only where a token is scored."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from tunesmith.data.render import IGNORE


@dataclass
class StepStats:
    """Sums over the micro-batches of one optimizer step (or one evaluation)."""

    loss_sum: float = 0.0
    tokens: int = 0
    correct: int = 0
    seen_tokens: int = 0  # every token through the model, scored or not

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.tokens, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.tokens, 1)

    def metrics(self) -> dict[str, float]:
        """The step's numbers under OpenAI's names (each gets a train_ or valid_ prefix)."""
        return {"loss": self.loss, "mean_token_accuracy": self.accuracy}


def scored_positions(labels: torch.Tensor) -> torch.Tensor:
    """Sequence positions whose next token carries a label, across the batch: `[k]`."""
    scored = (labels[:, 1:] != IGNORE).any(dim=0)  # [seq-1]
    return scored.nonzero().squeeze(-1)


def assistant_loss(
    model: torch.nn.Module, inputs: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed cross-entropy, scored-token count and correct-argmax count for one batch.

    The vocabulary head is ~20% of a small model's FLOPs and most positions carry no loss, so the
    head runs only at scored positions (`logits_to_keep` takes an index tensor). The model is
    called as a whole, so PEFT, DDP and autocast wrappers all see the call.
    """
    labels = inputs["labels"]
    keep = scored_positions(labels)  # [k]
    model_inputs = {k: v for k, v in inputs.items() if k not in ("labels", "num_tokens")}
    # use_cache=False is load-bearing: with a KV cache, transformers skips the packed-sequence
    # detection and a packed row attends across its examples.
    logits = model(**model_inputs, logits_to_keep=keep, use_cache=False).logits  # [b, k, vocab]
    targets = labels[:, keep + 1]  # [b, k]
    mask = targets != IGNORE
    scored = logits[mask].float()  # [n, vocab]: cross-entropy in fp32 even under bf16 autocast
    wanted = targets[mask]
    loss_sum = F.cross_entropy(scored, wanted, reduction="sum")
    correct = (scored.detach().argmax(-1) == wanted).sum()
    return loss_sum, mask.sum(), correct


def real_tokens(inputs: dict[str, torch.Tensor]) -> int:
    """Tokens in a batch, padding excluded."""
    if "num_tokens" in inputs:
        return int(inputs["num_tokens"].sum())
    if "attention_mask" in inputs:
        return int(inputs["attention_mask"].sum())
    return int(inputs["input_ids"].numel())


def backward_by_rows(trainer, model, chunks: list[dict], **loss_kwargs) -> torch.Tensor:
    """Forward and backward one row of a batch at a time, gradients summed; each row's loss must
    already be its share of the batch's mean loss. The step's loss is the rows' sum."""
    losses = []
    for i, chunk in enumerate(chunks):
        # Gradients are all-reduced once, after the last row (when training on several ranks).
        sync = trainer.accelerator.no_sync(model) if i < len(chunks) - 1 else nullcontext()
        with sync, trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(model, chunk, **loss_kwargs)
            trainer.accelerator.backward(loss)
        losses.append(loss.detach())
    return torch.stack(losses).sum()


class TunesmithSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss and token accuracy come from `assistant_loss`.

    TRL's own fused head scores every position on CPU and casts the head to fp32 there; this one
    scores only assistant tokens, under the run's autocast. Stats per step feed the events.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.train_stats = StepStats()
        self.eval_stats = StepStats()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_sum, n_tokens, correct = assistant_loss(model, inputs)
        denominator = (
            num_items_in_batch if num_items_in_batch is not None else n_tokens.clamp(min=1)
        )
        stats = self.train_stats if model.training else self.eval_stats
        stats.loss_sum += loss_sum.item()
        stats.tokens += int(n_tokens)
        stats.correct += int(correct)
        stats.seen_tokens += real_tokens(inputs)
        loss = loss_sum / denominator
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return (loss, None) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """A packed batch is trained one row at a time, gradients summed.

        Activation memory then grows with the row length, not with the batch: a batch of long
        examples fits in the memory of one row. Each row's loss is divided by the scored tokens
        of the whole batch, so the summed gradient is the batch's mean-loss gradient.
        """
        rows = inputs["input_ids"].shape[0]
        # On a GPU one batched pass over all rows is faster, and memory is rarely the limit.
        if rows == 1 or "num_tokens" not in inputs or self.args.device.type != "cpu":
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        total = num_items_in_batch
        if total is None:
            total = (inputs["labels"][:, 1:] != IGNORE).sum()
        lengths = inputs["num_tokens"].tolist()
        # Each row alone, its padding cut off: no compute is spent on it.
        chunks = [
            {
                key: value[row : row + 1, : lengths[row]]
                if value.dim() == 2
                else value[row : row + 1]
                for key, value in inputs.items()
            }
            for row in range(rows)
        ]
        return backward_by_rows(self, model, chunks, num_items_in_batch=total)

    def take_train_stats(self) -> StepStats:
        """The step's numbers over all ranks (each counted only its share of the batch)."""
        stats, self.train_stats = self.train_stats, StepStats()
        return self._over_ranks(stats)

    def take_eval_stats(self) -> StepStats:
        stats, self.eval_stats = self.eval_stats, StepStats()
        return self._over_ranks(stats)

    def _over_ranks(self, stats: StepStats) -> StepStats:
        if self.accelerator.num_processes == 1:
            return stats
        from tunesmith.train.rank import all_sum

        loss_sum, tokens, correct, seen = all_sum(
            [stats.loss_sum, stats.tokens, stats.correct, stats.seen_tokens], self.args.device
        )
        return StepStats(loss_sum, int(tokens), int(correct), int(seen))
