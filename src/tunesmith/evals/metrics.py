"""Task metrics on model outputs. Malformed output (bad JSON, prose, nothing) scores as wrong."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def normalize_text(text: str) -> str:
    return " ".join(text.strip().split())


def parse_json(text: str, *, strict: bool = False) -> Any | None:
    """The JSON value in a model's answer, or None.

    Strict: the whole answer (code fences aside) must be JSON. Lenient: the first `{…}` or `[…]`
    that parses, so a correct object wrapped in prose still gets per-field credit.
    """
    body = _FENCE.sub("", text.strip())
    try:
        return json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        if strict:
            return None
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", body):
        try:
            value, _ = decoder.raw_decode(body, match.start())
            return value
        except (json.JSONDecodeError, RecursionError):
            continue
    return None


def exact_match(prediction: str, reference: str) -> bool:
    """Equal as JSON when the reference is JSON (key order and spacing ignored), else as text."""
    ref = parse_json(reference, strict=True)
    if ref is not None:
        return parse_json(prediction, strict=True) == ref
    return normalize_text(prediction) == normalize_text(reference)


@dataclass
class FieldScore:
    correct: int
    total: int
    valid_json: bool

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def json_fields(prediction: str, reference: str) -> FieldScore:
    """Share of the reference object's fields that the answer got exactly right."""
    ref = parse_json(reference, strict=True)
    if not isinstance(ref, dict):
        raise ValueError("json_fields needs a JSON object as the reference answer")
    pred = parse_json(prediction)
    valid = parse_json(prediction, strict=True) is not None
    if not isinstance(pred, dict):
        return FieldScore(0, len(ref), valid)
    correct = sum(1 for key, value in ref.items() if key in pred and pred[key] == value)
    return FieldScore(correct, len(ref), valid)
