"""OpenAI's grader JSON as pydantic models, and `parse_grader`, which locates every mistake."""

from __future__ import annotations

import ast
import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunesmith.errors import TunesmithError
from tunesmith.graders.formula import check_formula
from tunesmith.graders.templates import check_template

MAX_SOURCE_BYTES = 256 * 1024  # OpenAI's limit on a python grader's source
Operation = Literal["eq", "ne", "like", "ilike"]
Metric = Literal[
    "cosine",
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
]


class _Spec(BaseModel):
    # Unknown keys are mistakes (a misspelt `refrence` would otherwise grade against nothing).
    model_config = ConfigDict(extra="forbid")


class StringCheckGrader(_Spec):
    type: Literal["string_check"]
    name: str
    input: str = Field(description="The text checked; may hold template variables.")
    reference: str = Field(description="The text it is checked against; may hold templates.")
    operation: Operation = Field(description="eq, ne; like = contains; ilike = any-case contains.")


class TextSimilarityGrader(_Spec):
    type: Literal["text_similarity"]
    name: str
    input: str
    reference: str
    evaluation_metric: Metric
    pass_threshold: float | None = None


class PythonGrader(_Spec):
    type: Literal["python"]
    name: str
    source: str = Field(description="Python defining `grade(sample, item) -> float`.")
    image_tag: str | None = Field(default=None, description="Accepted and ignored: one runtime.")
    pass_threshold: float | None = None


class TextPart(_Spec):
    type: Literal["input_text", "output_text"]
    text: str


class InputMessage(_Spec):
    """A message for a model grader; its text may hold template variables."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | TextPart | list[str | TextPart]
    type: Literal["message"] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        parts = value if isinstance(value, list) else [value]
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("input_image", "input_audio"):
                raise ValueError(f"{kind} content is not supported: tunesmith's judges read text")
        return value

    def texts(self) -> list[str]:
        parts = self.content if isinstance(self.content, list) else [self.content]
        return [p if isinstance(p, str) else p.text for p in parts]


class JudgeSampling(_Spec):
    max_completions_tokens: int | None = Field(default=None, ge=1)
    reasoning_effort: str | None = None  # accepted and ignored: the served models do not reason
    seed: int | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)


class ScoreModelGrader(_Spec):
    type: Literal["score_model"]
    name: str
    model: str
    input: list[InputMessage] = Field(min_length=1)
    range: list[float] = Field(default_factory=lambda: [0.0, 1.0])
    sampling_params: JudgeSampling | None = None
    pass_threshold: float | None = None

    @field_validator("range")
    @classmethod
    def _two_numbers(cls, value: list[float]) -> list[float]:
        if len(value) != 2 or not value[0] < value[1]:
            raise ValueError("range is two numbers, the lowest score first: e.g. [0, 1]")
        return value


class LabelModelGrader(_Spec):
    type: Literal["label_model"]
    name: str
    model: str
    input: list[InputMessage] = Field(min_length=1)
    labels: list[str] = Field(min_length=1)
    passing_labels: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _passing_are_labels(self) -> LabelModelGrader:
        unknown = [label for label in self.passing_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"passing_labels must be among labels; not: {unknown}")
        if any(not label for label in self.labels):
            raise ValueError("a label cannot be empty")
        return self


SubGrader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader,
    Field(discriminator="type"),
]


class MultiGrader(_Spec):
    type: Literal["multi"]
    name: str
    graders: dict[str, SubGrader] = Field(description="Sub-graders by the name the formula uses.")
    calculate_output: str


Grader = (
    StringCheckGrader
    | TextSimilarityGrader
    | PythonGrader
    | ScoreModelGrader
    | LabelModelGrader
    | MultiGrader
)
_TYPES: dict[str, type[BaseModel]] = {
    "string_check": StringCheckGrader,
    "text_similarity": TextSimilarityGrader,
    "python": PythonGrader,
    "score_model": ScoreModelGrader,
    "label_model": LabelModelGrader,
    "multi": MultiGrader,
}


def model_graders(grader: Grader) -> list[tuple[str, ScoreModelGrader | LabelModelGrader]]:
    """The parts of a grader that a served model judges, each with its key in a multi grader
    ("" for a grader that is one itself): they need a judge, and their models must exist."""
    parts = grader.graders.items() if isinstance(grader, MultiGrader) else [("", grader)]
    return [(key, g) for key, g in parts if isinstance(g, ScoreModelGrader | LabelModelGrader)]


def _did_you_mean(word: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.5)
    lead = f"Did you mean {close[0]!r}? " if close else ""
    return f"{lead}Choose one of: {', '.join(choices)}."


def _located(exc: ValidationError, model: type[BaseModel], param: str) -> TunesmithError:
    """The first pydantic error as a TunesmithError whose `param` is the field's full path."""
    errors = exc.errors()
    # A misspelt key shows up twice, as unknown and as the missing right one: name the typo.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(p) for p in first["loc"]]
    where = ".".join([param, *loc])
    hint = None
    if first["type"] == "literal_error":
        hint = _did_you_mean(first["input"], re.findall(r"'([^']*)'", first["ctx"]["expected"]))
        message = f"{where}: {first['input']!r} is not allowed."
    elif first["type"] == "extra_forbidden":
        fields = list(model.model_fields) if len(loc) == 1 else []
        hint = _did_you_mean(loc[-1], fields) if fields else "Remove it."
        message = f"{where}: unknown field."
    else:
        message = f"{where}: {first['msg'].removeprefix('Value error, ')}."
    return TunesmithError(message, hint, param=where)


def parse_grader(obj: Any, param: str = "grader", *, nested: bool = False) -> Grader:
    """A grader from OpenAI's JSON, checked all through: fields, templates, the formula, the
    python source's syntax. Raises TunesmithError with `param` naming the field, e.g.
    `grader.graders.b.operation`."""
    if not isinstance(obj, dict):
        raise TunesmithError(f"{param} must be a JSON object.", param=param)
    kind = obj.get("type")
    allowed = [t for t in _TYPES if not (nested and t == "multi")]
    if kind not in allowed:
        what = "is missing" if kind is None else f"{kind!r} is not a grader type here"
        raise TunesmithError(
            f"{param}.type {what}.", _did_you_mean(kind, allowed), param=f"{param}.type"
        )
    model = _TYPES[kind]
    data = dict(obj)
    if kind == "multi":
        data["graders"] = _sub_graders(obj.get("graders"), param)
    try:
        grader = model.model_validate(data)
    except ValidationError as exc:
        raise _located(exc, model, param) from None
    _check(grader, param)
    return grader  # type: ignore[return-value]


def _sub_graders(value: Any, param: str) -> dict[str, Grader]:
    """OpenAI's docs give `graders` as {name: grader}; the SDK's types as one grader, whose own
    name the formula then uses. Both are accepted, kept as {name: grader}."""
    where = f"{param}.graders"
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        one = parse_grader(value, where, nested=True)
        return {one.name: one}
    if not isinstance(value, dict) or not value:
        raise TunesmithError(
            f"{where} must be an object of named graders.",
            'e.g. {"exact": {"type": "string_check", ...}, "close": {...}}',
            param=where,
        )
    return {key: parse_grader(sub, f"{where}.{key}", nested=True) for key, sub in value.items()}


def _check(grader: Grader, param: str) -> None:
    """What the fields' types cannot say: templates, the formula, the python source."""
    if isinstance(grader, (StringCheckGrader, TextSimilarityGrader)):
        check_template(grader.input, f"{param}.input")
        check_template(grader.reference, f"{param}.reference")
    elif isinstance(grader, (ScoreModelGrader, LabelModelGrader)):
        for i, message in enumerate(grader.input):
            for text in message.texts():
                check_template(text, f"{param}.input.{i}.content")
    elif isinstance(grader, PythonGrader):
        _check_source(grader.source, f"{param}.source")
    elif isinstance(grader, MultiGrader):
        check_formula(grader.calculate_output, list(grader.graders), f"{param}.calculate_output")


def _check_source(source: str, param: str) -> None:
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise TunesmithError(f"{param} is over {MAX_SOURCE_BYTES // 1024} KiB.", param=param)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:  # ValueError: a NUL character
        where = str(exc)
        if isinstance(exc, SyntaxError):
            where = f"{exc.msg} (line {exc.lineno})" if exc.lineno else exc.msg
        raise TunesmithError(f"{param} is not valid Python: {where}.", param=param) from None
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if "grade" not in defined:
        raise TunesmithError(
            f"{param} defines no top-level `grade` function.",
            "Define `def grade(sample: dict, item: dict) -> float:`.",
            param=param,
        )


def grader_json(grader: Grader) -> dict:
    """The grader as OpenAI's JSON (what /validate returns)."""
    return grader.model_dump(mode="json", exclude_none=True)
