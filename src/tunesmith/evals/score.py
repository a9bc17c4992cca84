"""Scoring one model on held-out conversations: generate every answer, then apply the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tunesmith.evals.metrics import exact_match, json_fields, parse_json

if TYPE_CHECKING:
    from tunesmith.data.records import Conversation
    from tunesmith.infer.engine import Engine
    from tunesmith.infer.sampling import SamplingParams
    from tunesmith.models.catalog import ModelSpec


@dataclass
class Scores:
    model: str
    n: int
    exact: float
    field_accuracy: float | None
    valid_json: float | None
    outputs: list[str] = field(default_factory=list)


def score(
    engine: Engine,
    spec: ModelSpec,
    tests: list[Conversation],
    params: SamplingParams,
    on_done=None,
) -> Scores:
    """Greedy answers to every test prompt, batched by the engine, scored against the reference."""
    from tunesmith.data.render import encode_prompt

    tokenizer = engine.tokenizer(spec)
    seqs = [engine.submit(spec, encode_prompt(tokenizer, t.prompt, t.tools), params) for t in tests]
    outputs = []
    for seq in seqs:
        outputs.append(engine.wait(seq).text)
        if on_done is not None:
            on_done()
    references = [t.answer.content or "" for t in tests]
    exact = sum(exact_match(o, r) for o, r in zip(outputs, references, strict=True)) / len(tests)
    is_json = all(isinstance(parse_json(r, strict=True), dict) for r in references)
    field_acc = valid = None
    if is_json:
        fields = [json_fields(o, r) for o, r in zip(outputs, references, strict=True)]
        field_acc = sum(f.correct for f in fields) / sum(f.total for f in fields)
        valid = sum(f.valid_json for f in fields) / len(fields)
    return Scores(spec.name, len(tests), exact, field_acc, valid, outputs)
