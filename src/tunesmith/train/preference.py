"""Preference tuning (DPO, ORPO, KTO): the objectives, the batches, the reference pass, the trainer.

What makes it fast, against TRL's DPOTrainer with its defaults:
- no reference model in the loop: the reference log-probabilities are computed once per example,
  before the first step, by the starting model (LoRA: the base with its adapters disabled) and
  cached in the run folder, so a resumed run does not compute them again;
- no padding: a pair's two answers are packed into one row with other pairs, each sequence
  attending only to itself (train/attention.py), and a pair never straddles two rows, so on a
  CPU a batch trains row by row and its memory is that of one row;
- the vocabulary head runs only where an answer token is scored (`logits_to_keep`).

Sequences are numbered unit by unit: a pair is a unit of two (chosen 2u, rejected 2u+1), a KTO
example a unit of one. Every objective sees each sequence's summed log-probability and its
token count, and returns its loss summed over the units present, so a batch split into rows
sums to the batch's mean loss.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers import Trainer

from tunesmith.data.render import IGNORE
from tunesmith.train.trainer import backward_by_rows, real_tokens, scored_positions

if TYPE_CHECKING:
    from datasets import Dataset

    from tunesmith.train.config import SFTConfig

REFERENCE_FILE = "reference_logps.json"


# --- the objectives --------------------------------------------------------------------------------


@dataclass
class Scores:
    """Per sequence: summed log-probability of its answer tokens (with gradient) and their count.
    `ref` is the reference's summed log-probability per sequence, `present` the units in this
    (part of the) batch, `label` KTO's desirable flag per unit. `units` and `chosen_tokens` count
    the whole batch, which a row's loss is a share of."""

    logps: torch.Tensor  # [S]
    counts: torch.Tensor  # [S]
    ref: torch.Tensor | None  # [S]
    present: torch.Tensor  # [U] bool
    units: int
    chosen_tokens: int
    label: torch.Tensor | None = None  # [U] bool


Sums = dict[str, tuple[float, int]]  # metric -> (sum over units, units)


class Objective:
    sides = 2  # sequences per unit
    needs_reference = True

    def loss(self, s: Scores) -> tuple[torch.Tensor, Sums]:
        """The loss summed over the present units, and metric sums."""
        raise NotImplementedError


def _pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor, loss: torch.Tensor) -> Sums:
    n = int(chosen.numel())
    return {
        "loss": (float(loss.detach().sum()), n),
        "rewards_chosen": (float(chosen.sum()), n),
        "rewards_rejected": (float(rejected.sum()), n),
        "reward_margin": (float((chosen - rejected).sum()), n),
        "reward_accuracy": (float((chosen > rejected).float().sum()), n),
    }


@dataclass
class DPO(Objective):
    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0

    def loss(self, s: Scores) -> tuple[torch.Tensor, Sums]:
        assert s.ref is not None
        logps, ref = s.logps, s.ref
        if self.loss_type == "ipo":  # IPO compares mean log-probabilities (its paper; TRL too)
            counts = s.counts.clamp(min=1)
            logps, ref = logps / counts, ref / counts
        chosen = (logps[0::2] - ref[0::2])[s.present]
        rejected = (logps[1::2] - ref[1::2])[s.present]
        logits = chosen - rejected
        if self.loss_type == "sigmoid":
            eps = self.label_smoothing
            losses = -(1 - eps) * F.logsigmoid(self.beta * logits) - eps * F.logsigmoid(
                -self.beta * logits
            )
        elif self.loss_type == "ipo":
            losses = (logits - 1 / (2 * self.beta)) ** 2
        else:  # hinge
            losses = torch.relu(1 - self.beta * logits)
        rewards = self.beta * chosen.detach(), self.beta * rejected.detach()
        return losses.sum(), _pair_metrics(*rewards, losses)


@dataclass
class ORPO(Objective):
    """Odds ratio: SFT loss on the chosen answer + beta * -log sigmoid(log odds(c) - log odds(r)),
    odds from the mean token log-probability (the ORPO paper; TRL's ORPOTrainer)."""

    beta: float = 0.1
    needs_reference = False

    def loss(self, s: Scores) -> tuple[torch.Tensor, Sums]:
        mean = s.logps / s.counts.clamp(min=1)
        chosen, rejected = mean[0::2][s.present], mean[1::2][s.present]
        # log(p / (1 - p)) with p = exp(mean): log1p(-exp(x)) is exact for x < 0
        log_odds = (chosen - rejected) - (
            torch.log1p(-torch.exp(chosen).clamp(max=1 - 1e-6))
            - torch.log1p(-torch.exp(rejected).clamp(max=1 - 1e-6))
        )
        ratio = F.logsigmoid(log_odds)
        # The SFT term is a token mean over the whole batch's chosen answers (as TRL's), this
        # row's part of it scaled so that the caller's division by the batch's units undoes it.
        nll = -s.logps[0::2][s.present].sum() / max(s.chosen_tokens, 1)
        loss_sum = s.units * nll - self.beta * ratio.sum()
        n = int(chosen.numel())
        metrics = _pair_metrics(self.beta * chosen.detach(), self.beta * rejected.detach(), ratio)
        metrics["loss"] = (float(loss_sum.detach()), n)
        metrics["nll_loss"] = (float(nll.detach()) * s.units, n)
        metrics["log_odds_ratio"] = (float(ratio.detach().sum()), n)
        return loss_sum, metrics


@dataclass
class KTO(Objective):
    """Desirable answers pushed above, undesirable below, a reference point z0: the mean reward of
    the answers scored together (a packed row on a CPU, the batch elsewhere), detached and clamped
    at 0. (The paper estimates z0 from mismatched prompt/answer pairs, one more forward pass; the
    answers' own rewards estimate the same KL at no cost.)"""

    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    sides = 1

    def loss(self, s: Scores) -> tuple[torch.Tensor, Sums]:
        assert s.ref is not None and s.label is not None
        rewards = (s.logps - s.ref)[s.present]
        good = s.label[s.present]
        z0 = rewards.detach().mean().clamp(min=0) if rewards.numel() else rewards.new_zeros(())
        losses = torch.where(
            good,
            self.desirable_weight * (1 - torch.sigmoid(self.beta * (rewards - z0))),
            self.undesirable_weight * (1 - torch.sigmoid(self.beta * (z0 - rewards))),
        )
        r = self.beta * rewards.detach()
        n, n_good = int(r.numel()), int(good.sum())
        return losses.sum(), {
            "loss": (float(losses.detach().sum()), n),
            "rewards_chosen": (float(r[good].sum()), n_good),
            "rewards_rejected": (float(r[~good].sum()), n - n_good),
            # right side of zero: a good answer above its reference, a bad one below
            "reward_accuracy": (float(((r > 0) == good).float().sum()), n),
            "kl": (float(z0) * n, n),
        }


def objective_for(config: SFTConfig) -> Objective:
    if config.method == "dpo":
        return DPO(config.beta, config.loss_type, config.label_smoothing)
    if config.method == "orpo":
        return ORPO(config.beta)
    if config.method == "kto":
        return KTO(config.beta, config.desirable_weight, config.undesirable_weight)
    raise ValueError(f"{config.method} is not a preference method")


# --- examples and batches --------------------------------------------------------------------------


def pair_examples(encoded_pairs: list) -> dict[str, list]:
    """Dataset columns of encoded pairs: each unit's sequences, in order."""
    return {
        "ids": [[p.chosen.input_ids, p.rejected.input_ids] for p in encoded_pairs],
        "labels": [[p.chosen.labels, p.rejected.labels] for p in encoded_pairs],
    }


def kto_examples(encoded: list, labels: list[bool]) -> dict[str, list]:
    return {
        "ids": [[e.input_ids] for e in encoded],
        "labels": [[e.labels] for e in encoded],
        "desirable": labels,
    }


@dataclass
class UnitCollator:
    """Packs units (a pair's two sequences, or one) into rows of at most `row_tokens` tokens.

    First fit, longest unit first; a unit never straddles two rows, and each sequence restarts
    its position ids, so transformers (and train/attention.py) keep sequences apart. `segments`
    names the sequence of every label position; padding is a segment of its own with no labels.
    """

    pad_token_id: int = 0
    row_tokens: int = 1024

    def __call__(self, units: list[dict]) -> dict[str, torch.Tensor]:
        sizes = [sum(len(ids) for ids in u["ids"]) for u in units]
        rows: list[list[int]] = []
        loads: list[int] = []
        for i in sorted(range(len(units)), key=lambda i: -sizes[i]):
            row = next(
                (r for r, load in enumerate(loads) if load + sizes[i] <= self.row_tokens), None
            )
            if row is None:
                rows.append([])
                loads.append(0)
                row = len(rows) - 1
            rows[row].append(i)
            loads[row] += sizes[i]
        sides = len(units[0]["ids"])
        width = max(loads)
        ids = torch.full((len(rows), width), self.pad_token_id)
        labels = torch.full((len(rows), width), IGNORE)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        segments = torch.full((len(rows), width), -1)
        unit_row = torch.zeros(len(units), dtype=torch.long)
        for r, members in enumerate(rows):
            start = 0
            for u in members:
                unit_row[u] = r
                for side, (seq, seq_labels) in enumerate(
                    zip(units[u]["ids"], units[u]["labels"], strict=True)
                ):
                    n = len(seq)
                    ids[r, start : start + n] = torch.tensor(seq)
                    # The first label is never scored: nothing before it in this sequence.
                    labels[r, start + 1 : start + n] = torch.tensor(seq_labels[1:])
                    positions[r, start : start + n] = torch.arange(n)
                    segments[r, start : start + n] = u * sides + side
                    start += n
            positions[r, start:] = torch.arange(width - start)
        batch = {
            "input_ids": ids,
            "labels": labels,
            "position_ids": positions,
            "segments": segments,
            "unit_row": unit_row,
            "num_tokens": torch.tensor(loads),
        }
        if "ref" in units[0]:
            batch["ref"] = torch.tensor([x for u in units for x in u["ref"]], dtype=torch.float32)
        if "desirable" in units[0]:
            batch["desirable"] = torch.tensor([bool(u["desirable"]) for u in units])
        return batch


def sequence_logps(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], n_sequences: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each sequence's scored tokens, and how many there were."""
    labels = batch["labels"]
    keep = scored_positions(labels)
    logits = model(
        input_ids=batch["input_ids"],
        position_ids=batch["position_ids"],
        logits_to_keep=keep,
        use_cache=False,  # with a cache, transformers would not see the packed sequences
    ).logits
    targets = labels[:, keep + 1]
    segments = batch["segments"][:, keep + 1]
    mask = targets != IGNORE
    # fp32 even under bf16 autocast; cross-entropy is the fused log-softmax-and-pick
    token_logps = -F.cross_entropy(logits[mask].float(), targets[mask], reduction="none")
    seg = segments[mask]
    sums = token_logps.new_zeros(n_sequences).index_add(0, seg, token_logps)
    counts = torch.zeros(n_sequences, dtype=torch.long, device=seg.device).index_add(
        0, seg, torch.ones_like(seg)
    )
    return sums, counts


# --- the reference pass ----------------------------------------------------------------------------


def reference_logps(
    model: torch.nn.Module,
    datasets: dict[str, Dataset],
    collator: UnitCollator,
    *,
    batch_size: int,
    device: str,
    precision: str,
    fresh_adapter: bool,
    cache: Path,
    key: str,
    exact: frozenset[str] = frozenset(),
) -> dict[str, list[list[float]]]:
    """Each unit's reference log-probabilities, per dataset name: read from `cache` when it was
    computed for the same `key` (data and model), else computed once and written there.

    The reference is the model as training starts. With a fresh LoRA adapter that is the base
    model: the adapters are disabled (PEFT's `disable_adapter`), so no copy of the model exists.
    Starting from an SFT model's adapter, the reference is that SFT model, as DPO after SFT
    wants. Training data is scored as training computes (bf16 when it trains in bf16), so that
    step 1's rewards are exactly 0; the datasets named in `exact` (validation) are scored in
    fp32, as `PreferenceTrainer.evaluate` scores the policy.
    """
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return saved["logps"]
    disabled = model.disable_adapter() if fresh_adapter else nullcontext()
    was_training = model.training
    model.eval()
    out: dict[str, list[list[float]]] = {}
    with torch.no_grad(), disabled:
        for name, dataset in datasets.items():
            numerics = (
                full_precision(model, device)
                if name in exact or precision != "bf16"
                else torch.autocast(device_type=device, dtype=torch.bfloat16)
            )
            values: list[list[float]] = []
            with numerics:
                for start in range(0, len(dataset), batch_size):
                    units = [
                        dataset[i] for i in range(start, min(start + batch_size, len(dataset)))
                    ]
                    batch = {k: v.to(device) for k, v in collator(units).items()}
                    sides = len(units[0]["ids"])
                    sums, _ = sequence_logps(model, batch, len(units) * sides)
                    flat = sums.tolist()
                    values += [flat[u * sides : (u + 1) * sides] for u in range(len(units))]
            out[name] = values
    model.train(was_training)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "logps": out}))
    tmp.replace(cache)
    return out


@contextmanager
def full_precision(model: torch.nn.Module, device: str) -> Iterator[None]:
    """Compute in fp32, the bf16 weights of a frozen base upcast meanwhile (exactly: a bf16 value
    is an fp32 value) and cast back after.

    Rewards are differences of summed log-probabilities between two nearby models: in bf16 the
    rounding of the residual stream swallows much of a LoRA adapter's small contribution. On the
    bench's held-out pairs, bf16 scoring reported 0.625 reward accuracy for an adapter that fp32
    scoring (and an independent fp32 check) put at 1.0. So validation numbers are computed here.
    """
    halves = [p for p in model.parameters() if p.dtype == torch.bfloat16]
    for p in halves:
        p.data = p.data.float()
    # Accelerate wraps a prepared model's forward in autocast; its own forward is kept beside.
    wrapped = model.__dict__.get("forward")
    original = model.__dict__.get("_original_forward")
    if original is not None:
        model.forward = original
    try:
        with torch.autocast(device_type=device, enabled=False):
            yield
    finally:
        if original is not None:
            model.forward = wrapped
        for p in halves:
            p.data = p.data.to(torch.bfloat16)


# --- the trainer -----------------------------------------------------------------------------------


@dataclass
class PreferenceStats:
    """Metric sums over the units of one optimizer step (or one evaluation)."""

    sums: dict[str, list] = field(default_factory=lambda: defaultdict(lambda: [0.0, 0]))
    tokens: int = 0  # answer tokens scored
    seen_tokens: int = 0  # every token through the model

    def add(self, metrics: Sums) -> None:
        for name, (total, n) in metrics.items():
            self.sums[name][0] += total
            self.sums[name][1] += n

    def metrics(self) -> dict[str, float]:
        out = {name: total / n for name, (total, n) in self.sums.items() if n}
        if "reward_margin" not in out and {"rewards_chosen", "rewards_rejected"} <= set(out):
            out["reward_margin"] = out["rewards_chosen"] - out["rewards_rejected"]
        return out

    @property
    def loss(self) -> float:
        return self.metrics().get("loss", math.nan)

    @property
    def accuracy(self) -> float:
        return self.metrics().get("reward_accuracy", math.nan)


class PreferenceTrainer(Trainer):
    """transformers' Trainer with a preference objective on packed units of sequences."""

    def __init__(self, *args, objective: Objective, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.train_stats = PreferenceStats()
        self.eval_stats = PreferenceStats()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The batch's mean loss over units (or this row's share of it, in `training_step`)."""
        sides = self.objective.sides
        units = inputs["unit_row"].shape[0]
        rows = inputs.pop("_rows", None)
        chosen_tokens = inputs.pop("_chosen_tokens", None)
        if rows is None:  # the whole batch at once
            rows = torch.arange(inputs["input_ids"].shape[0], device=inputs["input_ids"].device)
            chosen_tokens = _chosen_tokens(inputs, sides)
        logps, counts = sequence_logps(model, inputs, units * sides)
        scores = Scores(
            logps=logps,
            counts=counts,
            ref=inputs.get("ref"),
            present=torch.isin(inputs["unit_row"], rows),
            units=units,
            chosen_tokens=chosen_tokens,
            label=inputs.get("desirable"),
        )
        loss_sum, metrics = self.objective.loss(scores)
        stats = self.train_stats if model.training else self.eval_stats
        stats.add(metrics)
        stats.tokens += int(counts.sum())
        stats.seen_tokens += real_tokens(inputs)
        loss = loss_sum / max(units, 1)
        return (loss, None) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """On a CPU a batch trains one row at a time (a unit never straddles rows), gradients
        summed, each row's loss divided by the batch's units: the batch's mean-loss gradient in
        the memory of one row."""
        rows = inputs["input_ids"].shape[0]
        if rows == 1 or self.args.device.type != "cpu":
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        chosen_tokens = _chosen_tokens(inputs, self.objective.sides)
        lengths = inputs["num_tokens"].tolist()
        chunks = []
        for row in range(rows):
            chunk = {
                key: inputs[key][row : row + 1, : lengths[row]]
                for key in ("input_ids", "labels", "position_ids", "segments")
            }
            chunk["num_tokens"] = inputs["num_tokens"][row : row + 1]
            # the per-unit tensors (references, labels, rows) stay whole: units index them
            chunk.update({k: v for k, v in inputs.items() if k not in chunk})
            chunk["_rows"] = torch.tensor([row], device=inputs["input_ids"].device)
            chunk["_chosen_tokens"] = chosen_tokens
            chunks.append(chunk)
        return backward_by_rows(self, model, chunks)

    def evaluate(self, *args, **kwargs):
        """Validation in fp32 (see `full_precision`), whatever precision training uses."""
        with full_precision(self.model, self.args.device.type):
            return super().evaluate(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def take_train_stats(self) -> PreferenceStats:
        stats, self.train_stats = self.train_stats, PreferenceStats()
        return stats

    def take_eval_stats(self) -> PreferenceStats:
        stats, self.eval_stats = self.eval_stats, PreferenceStats()
        return stats


def _chosen_tokens(inputs: dict[str, torch.Tensor], sides: int) -> int:
    """Scored tokens of the chosen answers in the whole batch (ORPO's SFT term is their mean)."""
    scored = inputs["labels"][:, 1:] != IGNORE
    segments = inputs["segments"][:, 1:][scored]
    return int((segments % sides == 0).sum()) if sides == 2 else int(segments.numel())


def unit_dataset(columns: dict[str, Any]) -> Dataset:
    from datasets import Dataset

    return Dataset.from_dict(columns)
