"""Per-request decoding settings, and turning one row of logits into the next token."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch

from tunesmith.errors import TunesmithError

GREEDY_BELOW = 1e-6  # temperatures under this decode greedily
ALLOWED_CANDIDATES = 64  # guided sampling draws among this many allowed tokens at most


@dataclass
class SamplingParams:
    """OpenAI's decoding knobs. temperature 0 means greedy."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    # Constrained decoding: "json" keeps the answer a JSON object; "tool_call" writes one of the
    # `tools` names (or `tool_named`'s, forced already) and a JSON object of its parameters.
    guide: Literal["json", "tool_call"] | None = None
    tools: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    tool_named: str | None = None

    @property
    def greedy(self) -> bool:
        """Temperature 0, or so close to it that logits / temperature would overflow to inf
        (1e-45 is a valid request): both mean the most likely token."""
        return self.temperature < GREEDY_BELOW


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]


def penalize(logits: torch.Tensor, generated: list[int], params: SamplingParams) -> torch.Tensor:
    """OpenAI's presence and frequency penalties and logit_bias, on a `[vocab]` row."""
    if params.logit_bias:
        ids = torch.tensor(list(params.logit_bias), device=logits.device)
        logits[ids] += torch.tensor(list(params.logit_bias.values()), device=logits.device)
    if generated and (params.presence_penalty or params.frequency_penalty):
        ids, counts = torch.tensor(generated, device=logits.device).unique(return_counts=True)
        logits[ids] -= params.frequency_penalty * counts.to(logits.dtype) + params.presence_penalty
    return logits


class NothingAllowed(TunesmithError):
    """Guided decoding reached a point where the guide allows no token of the vocabulary (e.g. a
    name in letters no token spells): this request cannot go on, the others in its batch can."""

    def __init__(self) -> None:
        super().__init__(
            "Guided decoding found no token that may come next.",
            "Check the tool names and schema: each must be writable in the model's vocabulary.",
        )


def _allowed_by_rank(logits: torch.Tensor, allowed: Callable[[int], bool]) -> Iterator[int]:
    """The tokens the guide allows, most likely first (checking all 49k tokens each step would be
    slow, so callers stop early). Raises NothingAllowed when there is none."""
    found = False
    for token in logits.argsort(descending=True).tolist():
        if allowed(token):
            found = True
            yield token
    if not found:
        raise NothingAllowed()


def _restrict(logits: torch.Tensor, allowed: Callable[[int], bool]) -> torch.Tensor:
    """Mask every token the guide refuses, keeping at most ALLOWED_CANDIDATES of the likeliest."""
    masked = torch.full_like(logits, float("-inf"))
    for token in itertools.islice(_allowed_by_rank(logits, allowed), ALLOWED_CANDIDATES):
        masked[token] = logits[token]
    return masked


def choose(
    logits: torch.Tensor,
    generated: list[int],
    params: SamplingParams,
    generator: torch.Generator | None,
    allowed: Callable[[int], bool] | None = None,
) -> tuple[int, TokenLogprob | None]:
    """The next token for one sequence from its `[vocab]` logits (fp32)."""
    logits = penalize(logits, generated, params)
    if allowed is not None and params.greedy:
        token = next(_allowed_by_rank(logits, allowed))
        return token, _logprob(logits, token, params)
    if allowed is not None:
        logits = _restrict(logits, allowed)
    if params.greedy:
        token = int(logits.argmax())
    else:
        scaled = logits / params.temperature
        probs = torch.softmax(scaled, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            # Keep the smallest head whose mass reaches top_p (the top token always stays).
            drop = sorted_probs.cumsum(-1) - sorted_probs > params.top_p
            sorted_probs[drop] = 0
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        token = int(torch.multinomial(probs, 1, generator=generator))
    return token, _logprob(logits, token, params)


def _logprob(logits: torch.Tensor, token: int, params: SamplingParams) -> TokenLogprob | None:
    if not params.logprobs:
        return None
    logp = torch.log_softmax(logits, dim=-1)
    top: list[tuple[int, float]] = []
    if params.top_logprobs:
        values, ids = logp.topk(params.top_logprobs)
        top = list(zip(ids.tolist(), values.tolist(), strict=True))
    return TokenLogprob(token, float(logp[token]), top)
