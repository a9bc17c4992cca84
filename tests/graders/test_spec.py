"""Grader specs: OpenAI's JSON accepted as the SDK writes it; every mistake located, with a hint."""

from __future__ import annotations

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.graders.spec import (
    LabelModelGrader,
    MultiGrader,
    ScoreModelGrader,
    StringCheckGrader,
    grader_json,
    parse_grader,
)

CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}


def refused(obj) -> TunesmithError:
    with pytest.raises(TunesmithError) as info:
        parse_grader(obj)
    return info.value


def test_each_type_parses_and_round_trips():
    assert isinstance(parse_grader(CHECK), StringCheckGrader)
    score = parse_grader(
        {
            "type": "score_model",
            "name": "s",
            "model": "smollm2-135m-instruct",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "{{item.q}}"}]}],
            "range": [1, 5],
            "sampling_params": {"temperature": 0, "max_completions_tokens": 8},
        }
    )
    assert isinstance(score, ScoreModelGrader) and score.range == [1, 5]
    label = parse_grader(
        {
            "type": "label_model",
            "name": "l",
            "model": "m",
            "input": [{"role": "system", "content": "Judge."}],
            "labels": ["good", "bad"],
            "passing_labels": ["good"],
        }
    )
    assert isinstance(label, LabelModelGrader)
    multi = parse_grader(
        {"type": "multi", "name": "m", "graders": {"a": CHECK}, "calculate_output": "a * 2"}
    )
    assert isinstance(multi, MultiGrader) and set(multi.graders) == {"a"}
    assert grader_json(parse_grader(CHECK)) == CHECK


def test_multi_accepts_one_grader_as_the_sdk_types_it():
    multi = parse_grader(
        {"type": "multi", "name": "m", "graders": CHECK, "calculate_output": "exact"}
    )
    assert list(multi.graders) == ["exact"]


def test_unknown_operation_is_located_in_a_multi_with_did_you_mean():
    error = refused(
        {
            "type": "multi",
            "name": "m",
            "graders": {"a": CHECK, "b": {**CHECK, "operation": "iliek"}},
            "calculate_output": "a + b",
        }
    )
    assert error.param == "grader.graders.b.operation"
    assert "Did you mean 'ilike'" in (error.hint or "")


def test_unknown_type_metric_and_key_get_did_you_mean():
    error = refused({**CHECK, "type": "string_chek"})
    assert error.param == "grader.type" and "'string_check'" in (error.hint or "")
    error = refused(
        {
            "type": "text_similarity",
            "name": "t",
            "input": "a",
            "reference": "b",
            "evaluation_metric": "rogue_l",
        }
    )
    assert error.param == "grader.evaluation_metric" and "'rouge_l'" in (error.hint or "")
    typo = {k: v for k, v in CHECK.items() if k != "reference"} | {"refrence": "x"}
    error = refused(typo)
    assert error.param == "grader.refrence" and "'reference'" in (error.hint or "")


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"input": "{{ answer }}"}, "grader.input"),
        ({"reference": "{{ item. }}"}, "grader.reference"),
        ({"name": 3}, "grader.name"),
    ],
)
def test_field_mistakes_are_located(change, param):
    assert refused({**CHECK, **change}).param == param


def test_model_grader_checks():
    base = {
        "type": "score_model",
        "name": "s",
        "model": "m",
        "input": [{"role": "user", "content": "x"}],
    }
    assert refused({**base, "range": [1, 0]}).param == "grader.range"
    image = [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]
    assert refused({**base, "input": image}).param == "grader.input.0.content"
    label = {**base, "type": "label_model", "labels": ["a"], "passing_labels": ["b"]}
    label.pop("input")
    label["input"] = base["input"]
    assert "passing_labels" in refused(label).message


def test_python_source_and_formula_checked_at_parse_time():
    python = {"type": "python", "name": "p", "source": "def grade(sample, item):\n  return 1\n"}
    parse_grader(python)
    assert refused({**python, "source": "def grade(:"}).param == "grader.source"
    assert "grade" in refused({**python, "source": "x = 1"}).message
    multi = {"type": "multi", "name": "m", "graders": {"a": CHECK}, "calculate_output": "a + b"}
    error = refused(multi)
    assert error.param == "grader.calculate_output" and "'b'" in error.message
    nested = {"type": "multi", "name": "m", "graders": {"a": multi}, "calculate_output": "a"}
    assert refused(nested).param == "grader.graders.a.type"
    assert refused([1]).param == "grader"
