"""Batches for training: packed into one row without attention across examples, or padded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunesmith.data.render import IGNORE

if TYPE_CHECKING:
    import torch


@dataclass
class PackedCollator:
    """Packs a batch into rows of at most `row_tokens` tokens, with per-example position ids.

    Examples go into rows first-fit, longest first; rows are padded to the longest row with a
    padding segment of its own. transformers reads restarting position ids as packed sequences
    and builds a block-diagonal causal mask, so no example attends to another (the cross-example
    leak of "wrapped" packing, see field-pitfalls.md). Rows, not one long row: attention over a
    row costs its length squared, and on a CPU the masked blocks are computed too.
    The first label of every example is ignored, so the last token of one example is never
    trained to predict the first of the next.
    """

    pad_token_id: int = 0
    row_tokens: int = 1024

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        import torch

        order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
        rows: list[list[int]] = []
        loads: list[int] = []
        for i in order:
            n = len(examples[i]["input_ids"])
            row = next((r for r, load in enumerate(loads) if load + n <= self.row_tokens), None)
            if row is None:
                rows.append([])
                loads.append(0)
                row = len(rows) - 1
            rows[row].append(i)
            loads[row] += n
        width = max(loads)
        ids = torch.full((len(rows), width), self.pad_token_id)
        labels = torch.full((len(rows), width), IGNORE)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        for r, members in enumerate(rows):
            start = 0
            for i in members:
                ex = examples[i]
                n = len(ex["input_ids"])
                ids[r, start : start + n] = torch.tensor(ex["input_ids"])
                labels[r, start + 1 : start + n] = torch.tensor(ex["labels"][1:])
                positions[r, start : start + n] = torch.arange(n)
                start += n
            positions[r, start:] = torch.arange(width - start)  # padding: a segment of its own
        # Real tokens per row (padding excluded), for throughput figures; never fed to the model.
        tokens = torch.tensor(loads)
        return {"input_ids": ids, "labels": labels, "position_ids": positions, "num_tokens": tokens}


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
