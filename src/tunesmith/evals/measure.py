"""Answering many prompts while measuring what each request costs: tokens, latency, wall time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tunesmith.data.records import Message
from tunesmith.data.render import encode_prompt
from tunesmith.infer.engine import EngineFront
from tunesmith.infer.sampling import SamplingParams
from tunesmith.models.spec import ModelSpec

CONCURRENCY = 8  # requests in flight at once: what a small service sees, and what batching needs


@dataclass
class Measured:
    outputs: list[str]
    prompt_tokens: list[int]
    completion_tokens: list[int]
    latencies: list[float]  # seconds from submission to the last token, per request
    wall_seconds: float  # all requests, start to end

    @property
    def seconds_per_request(self) -> float:
        """Machine time per request at this concurrency (the default cost unit)."""
        return self.wall_seconds / max(len(self.outputs), 1)

    def latency(self, q: float) -> float:
        return float(np.quantile(self.latencies, q)) if self.latencies else 0.0


def answer_all(
    engine: EngineFront,
    spec: ModelSpec,
    prompts: list[list[Message]],
    params: SamplingParams,
    on_done: Callable[[int, int], None] | None = None,
    concurrency: int = CONCURRENCY,
    tools: list[list[dict] | None] | None = None,
) -> Measured:
    """Every prompt answered, at most `concurrency` in flight, each one's latency recorded.

    `tools[i]`, when given, is the tool list prompt i offers, rendered as training renders it.
    `on_done(done, total)` is called as answers complete.
    """
    tokenizer = engine.tokenizer(spec)
    offered = tools or [None] * len(prompts)
    encoded = [encode_prompt(tokenizer, p, t) for p, t in zip(prompts, offered, strict=True)]
    engine.warm(spec)  # loading is not part of any request's latency
    outputs: list[str] = [""] * len(prompts)
    completion: list[int] = [0] * len(prompts)
    latency: list[float] = [0.0] * len(prompts)
    in_flight: list[tuple[int, float, object]] = []
    started = time.monotonic()
    pending = iter(range(len(prompts)))
    while True:
        while len(in_flight) < concurrency and (i := next(pending, None)) is not None:
            in_flight.append((i, time.monotonic(), engine.submit(spec, encoded[i], params)))
        if not in_flight:
            break
        finished = [item for item in in_flight if item[2].finish_reason is not None]
        if not finished:
            time.sleep(0.005)
            continue
        for item in finished:
            i, submitted, seq = item
            in_flight.remove(item)
            done = engine.wait(seq)
            outputs[i], completion[i] = done.text, done.completion_tokens
            latency[i] = time.monotonic() - submitted
            if on_done is not None:
                on_done(sum(1 for t in latency if t), len(prompts))
    return Measured(
        outputs=outputs,
        prompt_tokens=[len(e) for e in encoded],
        completion_tokens=completion,
        latencies=latency,
        wall_seconds=time.monotonic() - started,
    )
