"""Batches for training: packed into one row without attention across examples, or padded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunesmith.data.render import IGNORE

if TYPE_CHECKING:
    import torch


@dataclass
class PackedCollator:
    """Concatenates a batch into a single row with per-example position ids.

    No padding is computed at all. transformers reads restarting position ids as packed sequences
    and builds a block-diagonal causal mask, so no example attends to another (the cross-example
    leak of "wrapped" packing, see field-pitfalls.md). The first label of every example is ignored,
    so the last token of one example is never trained to predict the first of the next.
    """

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        import torch

        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for ex in examples:
            n = len(ex["input_ids"])
            ids += ex["input_ids"]
            labels += [IGNORE, *ex["labels"][1:]]
            positions += range(n)
        return {
            "input_ids": torch.tensor([ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]),
        }


@dataclass
class PaddedCollator:
    """Right-pads a batch to its longest example (the usual layout, for comparison and eval)."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(ex["input_ids"]) for ex in examples)
        ids = torch.full((len(examples), width), self.pad_token_id)
        labels = torch.full((len(examples), width), IGNORE)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, ex in enumerate(examples):
            n = len(ex["input_ids"])
            ids[row, :n] = torch.tensor(ex["input_ids"])
            labels[row, 1:n] = torch.tensor(ex["labels"][1:])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
