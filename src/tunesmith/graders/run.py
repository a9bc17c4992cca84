"""Grading: one sample (`grade`), many with one sandbox worker (`Grading`), with OpenAI's error flags.

A sample's failure (a missing template variable, a python grader that crashes, a judge that
answers nonsense) is its reward of 0 with the flag and the reason set, never an exception: GRPO
scores hundreds of samples and one bad one must not stop the rest.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field

from tunesmith.errors import TunesmithError
from tunesmith.graders.formula import check_formula, evaluate
from tunesmith.graders.model import Judge, JudgeParseError, label_with_model, score_with_model
from tunesmith.graders.sandbox import Limits, Sandbox
from tunesmith.graders.spec import (
    Grader,
    LabelModelGrader,
    MultiGrader,
    PythonGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
)
from tunesmith.graders.templates import TemplateError, render
from tunesmith.graders.text import similarity, string_check


class GradeErrors(BaseModel):
    """OpenAI's `metadata.errors`: which kind of failure, if any, zeroed the reward."""

    formula_parse_error: bool = False
    invalid_variable_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_server_error: bool = False
    model_grader_server_error_details: str | None = None
    other_error: bool = False
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False

    def any(self) -> bool:
        return any(v is True for v in self.model_dump().values())


class GradeResult(BaseModel):
    """One sample's grade. `reason` says in words why a failed sample scored 0."""

    name: str
    type: str
    reward: float
    sub_rewards: dict[str, float] = Field(default_factory=dict)
    scores: dict[str, Any] = Field(default_factory=dict)
    errors: GradeErrors = Field(default_factory=GradeErrors)
    reason: str | None = None
    execution_time: float = 0.0  # seconds
    token_usage: dict[str, dict[str, int]] = Field(default_factory=dict)  # per judge model

    @property
    def error(self) -> str | None:
        """The reason, or None when the sample was graded (train/grpo.py reads this name)."""
        return self.reason

    @property
    def total_tokens(self) -> int | None:
        if not self.token_usage:
            return None
        return sum(u.get("total_tokens", 0) for u in self.token_usage.values())


def make_sample(output_text: str = "", **extra: Any) -> dict:
    """OpenAI's `sample` namespace from the model's text: output_json when the text is JSON."""
    sample = {"output_text": output_text, "output_json": None, "output_tools": [], "choices": []}
    sample.update(extra)
    return normalize_sample(sample)


def normalize_sample(sample: dict) -> dict:
    """The sample with output_text a string and output_json parsed from it when it is JSON."""
    sample = dict(sample)
    text = sample.get("output_text")
    sample["output_text"] = "" if text is None else str(text)
    if sample.get("output_json") is None:
        try:
            sample["output_json"] = json.loads(sample["output_text"])
        except ValueError:
            sample["output_json"] = None
    sample.setdefault("output_tools", [])
    sample.setdefault("choices", [])
    return sample


class Grading:
    """One grader over many samples: python graders keep one sandbox worker for the lot.

    Use as a context manager (or call `close`) so the workers end with it."""

    def __init__(self, grader: Grader, *, judge: Judge | None = None, limits: Limits | None = None):
        self.grader = grader
        self.judge = judge
        self.limits = limits
        self._sandboxes: dict[str, Sandbox] = {}
        self._formula = (
            check_formula(grader.calculate_output, list(grader.graders), "grader.calculate_output")
            if isinstance(grader, MultiGrader)
            else None
        )

    def __enter__(self) -> Grading:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for sandbox in self._sandboxes.values():
            sandbox.close()
        self._sandboxes.clear()

    def grade(self, sample: dict, item: Any = None) -> GradeResult:
        start = time.monotonic()
        sample = normalize_sample(sample)
        item = {} if item is None else item
        result = GradeResult(name=self.grader.name, type=self.grader.type, reward=0.0)
        if isinstance(self.grader, MultiGrader):
            self._multi(self.grader, sample, item, result)
        else:
            reward = self._one(self.grader, "", sample, item, result)
            result.reward = 0.0 if reward is None else reward
        result.scores = {self.grader.name: result.reward, **result.sub_rewards}
        result.execution_time = time.monotonic() - start
        return result

    def _multi(self, grader: MultiGrader, sample: dict, item: Any, result: GradeResult) -> None:
        for key, sub in grader.graders.items():
            reward = self._one(sub, key, sample, item, result)
            result.sub_rewards[key] = 0.0 if reward is None else reward
        if result.errors.any():
            return  # a failed part zeroes the whole, as OpenAI's flags say
        try:
            result.reward = evaluate(self._formula, result.sub_rewards)  # type: ignore[arg-type]
        except (ArithmeticError, ValueError) as exc:
            result.errors.other_error = True
            result.reason = f"calculate_output could not be computed: {exc}"

    def _one(self, grader: Grader, key: str, sample: dict, item: Any, result: GradeResult):
        """One non-multi grader's reward, or None with the flag and reason set on `result`."""
        try:
            return self._score(grader, key, sample, item, result)
        except TemplateError as exc:
            result.errors.sample_parse_error = exc.sample_parse
            result.errors.invalid_variable_error = not exc.sample_parse
            result.reason = result.reason or exc.message
        except JudgeParseError as exc:
            _add_usage(result, grader.model, exc.usage)  # type: ignore[union-attr]
            result.errors.model_grader_parse_error = True
            result.reason = result.reason or str(exc)
        except TunesmithError as exc:  # e.g. the judge's model cannot be found or loaded
            result.errors.model_grader_server_error = True
            result.errors.model_grader_server_error_details = str(exc)
            result.reason = result.reason or str(exc)
        return None

    def _score(self, grader: Grader, key: str, sample: dict, item: Any, result: GradeResult):
        if isinstance(grader, StringCheckGrader):
            value, reference = (
                render(grader.input, item, sample),
                render(grader.reference, item, sample),
            )
            return string_check(value, reference, grader.operation)
        if isinstance(grader, TextSimilarityGrader):
            value, reference = (
                render(grader.input, item, sample),
                render(grader.reference, item, sample),
            )
            return similarity(value, reference, grader.evaluation_metric)
        if isinstance(grader, PythonGrader):
            return self._python(grader, key, sample, item, result)
        if isinstance(grader, (ScoreModelGrader, LabelModelGrader)):
            if self.judge is None:
                raise TunesmithError(f"The {grader.type} grader {grader.name!r} needs a judge.")
            grade = score_with_model if isinstance(grader, ScoreModelGrader) else label_with_model
            judged = grade(grader, sample, item, self.judge)  # type: ignore[arg-type]
            _add_usage(result, grader.model, judged.usage)
            return judged.reward
        raise TunesmithError(f"Unknown grader type {grader.type!r}.")

    def _python(self, grader: PythonGrader, key: str, sample: dict, item: Any, result: GradeResult):
        sandbox = self._sandboxes.get(key)
        if sandbox is None:
            sandbox = self._sandboxes[key] = Sandbox(grader.source, self.limits)
        outcome = sandbox.run(sample, item)
        if outcome.score is not None:
            return outcome.score
        result.reason = result.reason or outcome.error
        if outcome.kind == "timeout":
            result.errors.unresponsive_reward_error = True
            result.errors.python_grader_runtime_error_details = outcome.error
        elif outcome.kind in ("runtime", "return"):
            result.errors.python_grader_runtime_error = True
            result.errors.python_grader_runtime_error_details = outcome.error
        else:  # memory, crash: the process, not the code's answer
            result.errors.python_grader_server_error = True
            result.errors.python_grader_server_error_type = outcome.kind
            result.errors.python_grader_runtime_error_details = outcome.error
        return None


def _add_usage(result: GradeResult, model: str, usage: dict) -> None:
    total = result.token_usage.setdefault(model, {})
    for name, count in usage.items():
        if isinstance(count, int):
            total[name] = total.get(name, 0) + count


def grade(
    grader: Grader,
    sample: dict,
    item: Any = None,
    *,
    judge: Judge | None = None,
    limits: Limits | None = None,
) -> GradeResult:
    """One sample's grade (a python grader's worker lives for this call only)."""
    with Grading(grader, judge=judge, limits=limits) as grading:
        return grading.grade(sample, item)
