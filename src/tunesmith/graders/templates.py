"""OpenAI's grader templates: `{{ item.a.b }}` and `{{ sample.output_text }}` filled per sample."""

from __future__ import annotations

import json
import re
from typing import Any

from tunesmith.errors import TunesmithError

NAMESPACES = ("item", "sample")
# `{{ namespace.path }}`; the path is dotted keys, with `[0]` for list indices (JSON Path-like).
_VARIABLE = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_STEP = re.compile(r"\.?([A-Za-z_][\w-]*)|\[(\d+)\]")


class TemplateError(TunesmithError):
    """A variable that names nothing in this sample or item: that sample's error, not a crash.

    `sample_parse` is set when the missing part is `sample.output_json` and the model's output
    was not JSON: OpenAI reports that as a sample parse error, not a bad variable."""

    def __init__(self, message: str, *, sample_parse: bool = False, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.sample_parse = sample_parse


def _path(expression: str) -> list[str | int]:
    """`item.a[0].b` → ["item", "a", 0, "b"]; a malformed path raises ValueError."""
    steps: list[str | int] = []
    at = 0
    while at < len(expression):
        match = _STEP.match(expression, at)
        if match is None or (at == 0 and match.group(1) is None) or match.end() == at:
            raise ValueError(expression)
        if at > 0 and match.group(1) is not None and expression[at] != ".":
            raise ValueError(expression)
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        at = match.end()
    if not steps:
        raise ValueError(expression)
    return steps


def check_template(template: str, param: str) -> None:
    """At validation time: every `{{ }}` is a well-formed path in the item or sample namespace."""
    for match in _VARIABLE.finditer(template):
        try:
            steps = _path(match.group(1))
        except ValueError:
            raise TunesmithError(
                f"The template variable {match.group(0)!r} is not a dotted path.",
                "Write variables like {{ item.answer }} or {{ sample.output_json.score }}.",
                param=param,
            ) from None
        if steps[0] not in NAMESPACES:
            raise TunesmithError(
                f"The template variable {match.group(0)!r} is in no known namespace.",
                "Variables start with `item.` (the dataset row) or `sample.` (the model output).",
                param=param,
            )


def item_fields(grader: Any) -> list[str]:
    """The item fields a grader's templates read (`{{ item.answer }}` → "answer"), in order, so
    that data missing one is refused before training. A python grader's code is not read."""
    found: dict[str, None] = {}

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key != "source":
                    visit(inner)
        elif isinstance(value, list):
            for inner in value:
                visit(inner)
        elif isinstance(value, str):
            for match in _VARIABLE.finditer(value):
                try:
                    steps = _path(match.group(1))
                except ValueError:
                    continue
                if steps[0] == "item" and len(steps) > 1 and isinstance(steps[1], str):
                    found[steps[1]] = None

    visit(grader)
    return list(found)


def lookup(expression: str, item: Any, sample: Any) -> Any:
    """The value a variable names; TemplateError when any step is missing."""
    steps = _path(expression)
    value: Any = {"item": item, "sample": sample}
    for depth, step in enumerate(steps):
        found = _step(value, step)
        if found is _MISSING:
            at = ".".join(str(s) for s in steps[: depth + 1])
            no_json = isinstance(sample, dict) and sample.get("output_json") is None
            raise TemplateError(
                f"The template variable {{{{ {expression} }}}} names nothing: {at} is missing.",
                sample_parse=steps[:2] == ["sample", "output_json"] and no_json,
            )
        value = found
    return value


_MISSING = object()


def _step(value: Any, step: str | int) -> Any:
    if isinstance(step, int):
        return (
            value[step]
            if isinstance(value, list) and -len(value) <= step < len(value)
            else _MISSING
        )
    if isinstance(value, dict) and step in value:
        return value[step]
    return _MISSING


def as_text(value: Any) -> str:
    """A string as itself; anything else as JSON (what OpenAI puts in the text)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render(template: str, item: Any, sample: Any) -> str:
    """The template with every variable replaced by its value's text."""
    return _VARIABLE.sub(lambda m: as_text(lookup(m.group(1), item, sample)), template)
