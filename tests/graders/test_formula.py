"""The multi grader's formula: arithmetic over sub-grader names; anything else refused, located."""

from __future__ import annotations

import math

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.graders.formula import check_formula, evaluate

NAMES = ["a", "b"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a + b", 1.5),
        ("0.5 * a + 0.5 * b", 0.75),
        ("(a - b) / 2", 0.25),
        ("-a ** 2", -1.0),
        ("min(a, b) + max(a, b, 2)", 2.5),
        ("abs(b - a) + floor(2.7) + ceil(0.1)", 3.5),
        ("sqrt(4) * exp(0) + log(1)", 2.0),
    ],
)
def test_arithmetic(text, value):
    assert evaluate(check_formula(text, NAMES, "p"), {"a": 1.0, "b": 0.5}) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("a + __import__('os')", 5),
        ("a.real", 1),
        ("[a, b]", 1),
        ("a if b else 1", 1),
        ("a + c", 5),
        ("'text'", 1),
        ("a < b", 1),
        ("a // b", 1),
        ("lambda: 1", 1),
        ("round(a)", 1),
    ],
)
def test_refused_with_a_location(text, column):
    with pytest.raises(TunesmithError) as info:
        check_formula(text, NAMES, "grader.calculate_output")
    assert info.value.param == "grader.calculate_output"
    assert f"column {column}" in info.value.message


def test_syntax_and_length():
    with pytest.raises(TunesmithError, match="not a formula"):
        check_formula("a +", NAMES, "p")
    with pytest.raises(TunesmithError, match="at most"):
        check_formula("a+" * 600 + "a", NAMES, "p")


def test_runtime_failures_raise_arithmetic_or_value_errors():
    for text in ("a / 0", "sqrt(-1)", "(-a) ** 0.5", "exp(1000)", "10.0 ** 400"):
        tree = check_formula(text, NAMES, "p")
        with pytest.raises((ArithmeticError, ValueError)):
            evaluate(tree, {"a": 1.0, "b": 0.0})
    assert math.isfinite(evaluate(check_formula("2 ** 10", NAMES, "p"), {}))
