"""Attention for packed rows that computes each example's own causal block, and nothing else.

With a block-diagonal mask, SDPA on a CPU still computes every masked block of a packed row: a
row of eight examples pays for 64 blocks and uses 8 (plus the mask itself, row length squared).
Here each example (a run of position ids starting at 0) gets its own causal attention call.
Registered with transformers' AttentionInterface; without a registered mask function,
transformers builds no mask at all for it. Anything that is not a packed row (a KV cache, an
explicit mask) goes to the stock SDPA path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "tunesmith_packed"


def segments(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each example in one row: a new example starts where the position is 0."""
    starts = (position_ids == 0).nonzero().squeeze(-1).tolist()
    ends = [*starts[1:], position_ids.shape[-1]]
    return list(zip(starts, ends, strict=True))


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # [batch, heads, seq, dim]
    key: torch.Tensor,  # [batch, kv_heads, seq, dim]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    if attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = query.shape[1] // key.shape[1]
    out = torch.empty_like(query)
    for row in range(query.shape[0]):
        for start, end in segments(position_ids[row]):
            out[row : row + 1, :, start:end] = F.scaled_dot_product_attention(
                query[row : row + 1, :, start:end],
                key[row : row + 1, :, start:end],
                value[row : row + 1, :, start:end],
                is_causal=True,
                scale=scaling,
                dropout_p=dropout if module.training else 0.0,
                enable_gqa=groups > 1,
            )
    return out.transpose(1, 2).contiguous(), None  # [batch, seq, heads, dim], as SDPA returns


AttentionInterface.register(NAME, packed_attention)
