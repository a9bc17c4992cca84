"""score_model and label_model: a tunesmith-served model judges the sample.

The judge is a callable passed in, so graders need neither the store nor the engine;
`engine_judge` builds one on `infer.engine.Engine` with guided decoding.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunesmith.graders.spec import InputMessage, JudgeSampling, LabelModelGrader, ScoreModelGrader
from tunesmith.graders.templates import render

# (model, messages, sampling, response_format) -> (the answer's text, token usage)
Judge = Callable[[str, list[dict], dict, "dict | None"], tuple[str, dict]]
DEFAULT_MAX_TOKENS = 64  # the answer is a short JSON object
LABEL_PREFIX = '{"label": "'
SCORE_PREFIX = '{"result": '
FORCE_BIAS = 100.0  # added to a logit: far above any other token's (they span a few tens)
_NUMBER_TOKEN = re.compile(r"[0-9.]+|[0-9.]*\}")


def _number_tokens(tokenizer, negative: bool) -> list[int]:
    """Ids of the tokens made of digits and points (a minus too for negative ranges), or that
    close the object: all a number and its end can be written with."""
    from tunesmith.infer.json_guide import token_texts

    pattern = re.compile(r"-?" + _NUMBER_TOKEN.pattern if negative else _NUMBER_TOKEN.pattern)
    return [i for i, text in enumerate(token_texts(tokenizer)) if text and pattern.fullmatch(text)]


class JudgeParseError(Exception):
    """The judge's answer was not the JSON it was asked for; the tokens were still spent."""

    def __init__(self, message: str, usage: dict) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass
class Judged:
    reward: float
    answer: Any  # the score or the label
    usage: dict


def render_messages(messages: list[InputMessage], item: Any, sample: Any) -> list[dict]:
    """The grader's input with its templates filled, each message's parts joined as text."""
    return [
        {"role": m.role, "content": "\n".join(render(t, item, sample) for t in m.texts())}
        for m in messages
    ]


def _score_format(low: float, high: float) -> dict:
    schema = {
        "type": "object",
        "properties": {"result": {"type": "number", "minimum": low, "maximum": high}},
        "required": ["result"],
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "score", "strict": True, "schema": schema},
    }


def _label_format(labels: list[str]) -> dict:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": labels}},
        "required": ["label"],
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "label", "strict": True, "schema": schema},
    }


def _with_instruction(messages: list[dict], instruction: str) -> list[dict]:
    """The answer's shape said in words as well: a small judge follows the guide better when it
    also knows what is wanted. Added to the last message, so templates keep their system-first
    order."""
    last = messages[-1]
    return [*messages[:-1], {**last, "content": f"{last['content']}\n\n{instruction}"}]


def _sampling(params: JudgeSampling | None) -> dict:
    return params.model_dump(exclude_none=True) if params else {}


def score_with_model(grader: ScoreModelGrader, sample: Any, item: Any, judge: Judge) -> Judged:
    low, high = grader.range
    messages = _with_instruction(
        render_messages(grader.input, item, sample),
        f'Answer only with JSON: {{"result": <a number from {low:g} to {high:g}>}}.',
    )
    text, usage = judge(
        grader.model, messages, _sampling(grader.sampling_params), _score_format(low, high)
    )
    try:
        result = json.loads(text)["result"]
        if isinstance(result, bool) or not isinstance(result, (int, float)):
            raise TypeError(result)
    except (ValueError, KeyError, TypeError) as exc:
        raise JudgeParseError(
            f'the judge answered {text[:200]!r}, not {{"result": number}}', usage
        ) from exc
    if not math.isfinite(result):
        raise JudgeParseError(f"the judge's score is {result}", usage)
    score = min(high, max(low, float(result)))  # clamped to the grader's range
    return Judged(score, score, usage)


def label_with_model(grader: LabelModelGrader, sample: Any, item: Any, judge: Judge) -> Judged:
    """1.0 when the judge's label is one of passing_labels, else 0.0."""
    choices = ", ".join(json.dumps(label) for label in grader.labels)
    messages = _with_instruction(
        render_messages(grader.input, item, sample),
        f'Answer only with JSON: {{"label": <one of {choices}>}}.',
    )
    text, usage = judge(grader.model, messages, {}, _label_format(grader.labels))
    try:
        label = json.loads(text)["label"]
    except (ValueError, KeyError, TypeError) as exc:
        raise JudgeParseError(
            f'the judge answered {text[:200]!r}, not {{"label": ...}}', usage
        ) from exc
    if label not in grader.labels:
        raise JudgeParseError(f"the judge's label {label!r} is not one of the labels", usage)
    return Judged(float(label in grader.passing_labels), label, usage)


# --- a judge on tunesmith's engine ---------------------------------------------------------------
def _schema(response_format: dict | None) -> dict:
    if not response_format or response_format.get("type") != "json_schema":
        return {}
    return (response_format.get("json_schema") or {}).get("schema") or {}


def engine_judge(engine, resolve: Callable[[str], Any]) -> Judge:
    """A Judge on `engine` (an `infer.engine.Engine`); `resolve` turns a model name into a
    ModelSpec (the API passes `store.models.resolve`). Greedy unless the grader's sampling_params
    set a temperature: the same sample should earn the same reward."""
    from tunesmith.data.records import Message
    from tunesmith.data.render import encode_prompt
    from tunesmith.infer.sampling import SamplingParams

    def judge(model: str, messages: list[dict], sampling: dict, response_format: dict | None):
        spec = resolve(model)
        tokenizer = engine.tokenizer(spec)
        prompt = encode_prompt(
            tokenizer, [Message(role=m["role"], content=m["content"]) for m in messages]
        )
        params = SamplingParams(
            max_tokens=sampling.get("max_completions_tokens") or DEFAULT_MAX_TOKENS,
            temperature=sampling.get("temperature", 0.0),
            top_p=sampling.get("top_p", 1.0),
            seed=sampling.get("seed"),
        )
        properties = _schema(response_format).get("properties") or {}
        labels = (properties.get("label") or {}).get("enum")
        number = list(properties) == ["result"] and properties["result"].get("type") == "number"
        prefix = ""
        if number:
            # infer's JSON guide keeps the text JSON but cannot make a value a number (a small
            # judge writes {"result": "Paris"}), so: seed `{"result": ` and let only number
            # tokens and the closing brace through, by logit bias.
            prefix = SCORE_PREFIX
            prompt += tokenizer(prefix, add_special_tokens=False)["input_ids"]
            negative = (properties["result"].get("minimum") or 0) < 0
            params.logit_bias = dict.fromkeys(_number_tokens(tokenizer, negative), FORCE_BIAS)
            params.stop = ["}"]
        elif labels:
            # An enum through the tool-call guide: it lets the model write only one of the offered
            # names, then `", "arguments": {}` (no parameters). Seeded with `{"label": "`.
            prefix = LABEL_PREFIX
            prompt += tokenizer(prefix, add_special_tokens=False)["input_ids"]
            params.guide, params.tools = "tool_call", {label: () for label in labels}
        elif properties:
            # A JSON object whose only keys are the schema's (the value types are not enforced).
            params.guide, params.tools = "tool_call", {"answer": tuple(properties)}
            params.tool_named = "answer"
        elif response_format:
            params.guide = "json"
        done = engine.wait(engine.submit(spec, prompt, params))
        text = done.text
        if number:
            text = prefix + text.split("}", 1)[0].strip() + "}"
        elif labels:
            chosen = text.split('"', 1)[0]
            text = json.dumps({"label": chosen}) if chosen in labels else prefix + text
        usage = {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens,
        }
        return text, usage

    return judge
