"""The running batch of one base model: requests join and leave between decode steps.

Each row keeps its own KV cache entries, left-padded to a common length. A newcomer is prefilled
on its own, then its cache is padded and concatenated to the running batch; a finished row is
cut out. Rows of one batch may use different LoRA adapters (PEFT's `adapter_names`).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tunesmith.infer.generation import Generation
from tunesmith.infer.sampling import choose

log = logging.getLogger(__name__)
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed batch


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    pad = [0, 0] * (t.dim() - dim - 1) + [missing, 0]
    return F.pad(t, pad)


class RunningBatch:
    def __init__(self, model, device: str, pad_id: int) -> None:
        self.model = model
        self.device = device
        self.pad_id = pad_id
        self.rows: list[Generation] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [batch, cached length], 1 where a token is real
        self.positions: list[int] = []  # next position id per row
        self.last: list[int] = []  # last token per row, the next decode input

    def __len__(self) -> int:
        return len(self.rows)

    def _forward(self, rows: list[Generation], **inputs):
        """Run the model with each row's adapter.

        PEFT's mixed-batch path (`adapter_names`) splits every LoRA layer's input by adapter, which
        costs ~2x per decode step on a CPU; a batch that uses one adapter (or none) takes the plain
        path instead.
        """
        if not hasattr(self.model, "peft_config"):
            return self.model(**inputs)
        names = {s.adapter for s in rows}
        if len(names) > 1:
            return self.model(**inputs, adapter_names=[s.adapter or BASE_ADAPTER for s in rows])
        (name,) = names
        if name is None:
            with self.model.disable_adapter():
                return self.model(**inputs)
        if self.model.active_adapter != name:
            self.model.set_adapter(name)
        return self.model(**inputs)

    @torch.inference_mode()
    def admit(self, newcomers: list[Generation]) -> None:
        """Prefill newcomers together, sample their first token, and merge them into the batch."""
        width = max(len(s.prompt_ids) for s in newcomers)
        ids = torch.full((len(newcomers), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(newcomers), width), dtype=torch.long)
        for row, s in enumerate(newcomers):
            ids[row, width - len(s.prompt_ids) :] = torch.tensor(s.prompt_ids)
            mask[row, width - len(s.prompt_ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        out = self._forward(
            newcomers,
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits[:, -1, :].float().cpu()
        self._merge(newcomers, out.past_key_values, mask.to(self.device))
        for row, s in enumerate(newcomers):
            self.positions.append(len(s.prompt_ids))
            self._sample(s, logits[row], len(self.rows) - len(newcomers) + row)

    def _merge(self, newcomers: list[Generation], cache: DynamicCache, mask: torch.Tensor) -> None:
        if self.cache is None:
            self.cache, self.mask = cache, mask
            self.rows = list(newcomers)
            self.last = [0] * len(newcomers)
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_left_pad(old.keys, width, 2), _left_pad(new.keys, width, 2)])
            old.values = torch.cat(
                [_left_pad(old.values, width, 2), _left_pad(new.values, width, 2)]
            )
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(mask, width, 1)])
        self.rows += newcomers
        self.last += [0] * len(newcomers)

    def can_merge(self) -> bool:
        """Only plain growing caches can be re-padded; sliding-window layers wait for a drain."""
        return self.cache is None or all(type(layer) is DynamicLayer for layer in self.cache.layers)

    def _sample(self, seq: Generation, logits: torch.Tensor, row: int) -> None:
        """Pick and take one row's next token. What goes wrong here belongs to that row alone (its
        sampling settings or its guide), so it fails that request; the batch decodes on and
        drops the row at the next `drop_finished`."""
        allowed = seq.guide.allows if seq.guide is not None else None
        try:
            token, logprob = choose(logits, seq.generated, seq.params, seq.generator, allowed)
            seq.accept(token, logprob)
        except Exception as exc:  # any error: a bug in one request must not end the others
            log.warning("request %s failed while sampling: %r", seq.id, exc)
            seq.fail(exc)
            return
        self.last[row] = token

    @torch.inference_mode()
    def step(self) -> None:
        """One decode step for every row, then drop the rows that finished."""
        ids = torch.tensor(self.last, dtype=torch.long).unsqueeze(-1)
        ones = torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=self.mask.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        positions = torch.tensor(self.positions).unsqueeze(-1)
        out = self._forward(
            self.rows,
            input_ids=ids.to(self.device),
            attention_mask=self.mask,
            position_ids=positions.to(self.device),
            past_key_values=self.cache,
            use_cache=True,
        )
        logits = out.logits[:, -1, :].float().cpu()
        for row, s in enumerate(self.rows):
            self.positions[row] += 1
            self._sample(s, logits[row], row)
        self.drop_finished()

    def drop_finished(self) -> None:
        keep = [row for row, s in enumerate(self.rows) if not s.done]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.rows, self.cache, self.mask, self.positions, self.last = [], None, None, [], []
            return
        index = torch.tensor(keep, device=self.mask.device)
        for layer in self.cache.layers:
            layer.batch_select_indices(index)
        self.mask = self.mask[index]
        # Columns that no remaining row uses (left padding of rows now gone) are cut away.
        first_used = int(self.mask.any(dim=0).nonzero()[0])
        if first_used:
            self.mask = self.mask[:, first_used:]
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, first_used:]
                layer.values = layer.values[:, :, first_used:]
        self.rows = [self.rows[r] for r in keep]
        self.positions = [self.positions[r] for r in keep]
        self.last = [self.last[r] for r in keep]

    def fail_all(self, error: BaseException) -> None:
        for s in self.rows:
            s.fail(error)
        self.rows, self.cache, self.mask, self.positions, self.last = [], None, None, [], []
