"""Task metrics on hand-made cases, malformed model output, the auto choice, bootstrap intervals."""

from __future__ import annotations

import json

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.evals.metrics import (
    METRICS,
    bootstrap_ci,
    choose_metric,
    exact,
    exact_match,
    json_fields,
    json_fields_score,
    label_accuracy,
    list_items,
    rouge_l,
    score_all,
    set_f1,
)
from tunesmith.tasks import ORDERS

ORDER = '{"customer": "Ana Larsen", "product": "floor mats", "quantity": 2, "city": "Tunis"}'
MALFORMED = [
    "",
    "   ",
    None,
    42,
    "I'm sorry, I can't help with that.",
    '{"customer": "Ana Larsen", "product": ',  # cut off mid-object
    "{'customer': 'Ana Larsen'}",  # Python, not JSON
    "```json\n{broken\n```",
    "[" * 500,
    "}{][",
]


def test_exact_compares_json_as_values_and_text_by_words():
    assert exact('{"b": 2, "a": 1}', '{"a":1,"b":2}') == 1.0
    assert exact('```json\n{"a": 1}\n```', '{"a": 1}') == 1.0
    assert exact('{"a": "1"}', '{"a": 1}') == 0.0
    assert exact('{"a": true}', '{"a": 1}') == 0.0  # Python's True == 1 is not JSON's
    assert exact('{"a": 2.0}', '{"a": 2}') == 1.0  # one JSON number
    assert exact("  hello   world ", "hello world") == 1.0
    assert exact("Hello world", "hello world") == 0.0


def test_json_fields_counts_the_reference_fields_right():
    half = '{"customer": "Ana Larsen", "product": "floor mat", "quantity": 2, "city": "Tunisia"}'
    assert json_fields_score(ORDER, ORDER) == 1.0
    assert json_fields_score(half, ORDER) == 0.5
    # Extra fields cost nothing; a missing field is a wrong field.
    assert json_fields_score('{"customer": "Ana Larsen", "note": "x"}', ORDER) == 0.25
    # An object wrapped in prose earns its fields; the valid-JSON rate is where it shows.
    assert json_fields_score(f"Here you go: {ORDER} Anything else?", ORDER) == 1.0
    assert json_fields(f"Here you go: {ORDER}", ORDER).valid_json is False
    assert json_fields_score('{"quantity": true}', '{"quantity": 1}') == 0.0
    assert json_fields_score("{}", "{}") == 1.0


def test_set_f1_on_lists_in_any_form():
    assert set_f1('["Red", "green", "blue"]', "red, green, blue") == 1.0
    assert set_f1("- blue\n- RED\n- green.", '["red", "green", "blue"]') == 1.0
    assert set_f1("1. red\n2) green", "red, green, blue") == pytest.approx(0.8)  # P 1, R 2/3
    assert set_f1("red, purple", "red, green, blue") == pytest.approx(0.4)  # P 1/2, R 1/3
    assert set_f1("red, red, red", "red") == 1.0  # sets: a repeated item counts once
    assert set_f1("yellow", "red, green") == 0.0
    assert set_f1("[]", "[]") == 1.0


def test_list_items_markers_separators_and_json():
    assert list_items("red, green, and blue") == ["red", "green", "blue"]
    assert list_items("apples; pears") == ["apples", "pears"]
    assert list_items("* One\n\n• Two\n-5 degrees") == ["one", "two", "-5 degrees"]
    assert list_items('Sure! ["a", 1, {"k": 2}]') == ["a", "1", '{"k": 2}']
    assert list_items("Paris, France\nRome, Italy") == ["paris, france", "rome, italy"]


def test_rouge_l_worked_by_hand():
    ref = "The cat sat on the mat."
    assert rouge_l(ref, ref) == 1.0
    # LCS "the cat on the mat" = 5 of 6 words either side: P = R = F = 5/6.
    assert rouge_l("the cat was on the mat", ref) == pytest.approx(5 / 6)
    # LCS 4: P = 4/4, R = 4/6, F = 2 * 1 * 2/3 / (1 + 2/3) = 0.8.
    assert rouge_l("The cat, on mat!", ref) == pytest.approx(0.8)
    # The same words reversed: LCS is "the ... the" plus one word = 3, so F = 1/2. Order counts.
    assert rouge_l("mat the on sat cat the", ref) == pytest.approx(0.5)
    assert rouge_l("dogs bark", ref) == 0.0
    assert rouge_l("", "") == 1.0


def test_label_accuracy_forgives_case_quotes_and_punctuation():
    for answer in ("positive", "Positive.", '"POSITIVE"', "  **positive**!", "'positive'"):
        assert label_accuracy(answer, "positive") == 1.0, answer
    assert label_accuracy("not positive", "positive") == 0.0
    assert label_accuracy("positive", "negative") == 0.0


@pytest.mark.parametrize("name", sorted(METRICS))
@pytest.mark.parametrize("output", MALFORMED, ids=repr)
def test_malformed_output_scores_zero_and_never_raises(name, output):
    references = {
        "exact": "yes",
        "json-fields": ORDER,
        "set-f1": "red, green, blue",
        "rouge-l": "The parcel arrives on Monday morning.",
        "label-accuracy": "positive",
    }
    assert METRICS[name](output, references[name]) == 0.0


def test_choose_metric_on_each_kind_of_reference_set():
    lines = (ORDERS / "test.jsonl").read_text().splitlines()
    orders = [json.loads(line)["messages"][-1]["content"] for line in lines]
    assert choose_metric(orders) == "json-fields"
    assert choose_metric(['["a", "b"]', "[]", '["c"]']) == "set-f1"
    assert choose_metric(["red, green", "- blue\n- white", "black"]) == "set-f1"
    assert choose_metric(["positive", "negative", "neutral", "Positive."] * 10) == "label-accuracy"
    assert choose_metric(["Paris", "Rome", "New York City"]) == "label-accuracy"
    prose = [
        "Your parcel left our warehouse today and should reach you within three days.",
        "Thanks for writing in, we have refunded the full amount to your card.",
    ]
    assert choose_metric(prose) == "rouge-l"
    # Commas in sentences do not make lists: these clauses are longer than list items.
    assert choose_metric(["Sure, I can help, just send the order number.", "No."]) == "rouge-l"
    # Many distinct short answers are not labels: 60 different names out of 60.
    assert choose_metric([f"name {i}" for i in range(60)]) == "rouge-l"
    # Mixed objects and text are not all objects.
    assert choose_metric([ORDER, "no order here at all, sorry about that one"]) == "rouge-l"
    with pytest.raises(ValueError):
        choose_metric([])


def test_score_all_reports_metric_exact_and_valid_json():
    outputs = [ORDER, f"Sure: {ORDER}", '{"customer": "Ana Larsen"}', None]
    result = score_all("json-fields", outputs, [ORDER] * 4)
    assert result.scores == [1.0, 1.0, 0.25, 0.0]
    assert result.mean == pytest.approx(0.5625)
    assert result.exact == [1.0, 0.0, 0.0, 0.0] and result.exact_mean == 0.25
    assert result.valid_json == 0.5
    assert result.ci[0] <= result.mean <= result.ci[1]
    assert result.exact_ci[0] <= result.exact_mean <= result.exact_ci[1]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["metric"] == "json-fields" and data["ci"] == list(result.ci)
    assert data["scores"] == result.scores and data["n"] == 4


def test_score_all_auto_and_its_refusals():
    result = score_all("auto", ["Positive", "no"], ["positive", "negative"])
    assert (result.metric, result.scores, result.valid_json) == ("label-accuracy", [1.0, 0.0], None)
    assert result.exact == [0.0, 0.0]  # exact match is strict about case
    with pytest.raises(TunesmithError, match="rouge-l"):
        score_all("rouge", ["a"], ["a"])
    with pytest.raises(TunesmithError, match="answer 2"):
        score_all("json-fields", ["{}", "{}"], [ORDER, "plain text"])
    with pytest.raises(ValueError):
        score_all("exact", ["a"], ["a", "b"])


def test_existing_helpers_still_work():
    assert exact_match('{"a": 1}', '{"a":1}') is True
    assert json_fields(ORDER, ORDER).accuracy == 1.0
    with pytest.raises(ValueError):
        json_fields("{}", "not json")


def test_bootstrap_ci_contains_the_mean_and_is_reproducible():
    values = [0.13, 0.92, 0.41, 0.77, 0.05, 0.66, 0.38, 0.99, 0.24, 0.58]
    low, high = bootstrap_ci(values)
    assert low <= sum(values) / len(values) <= high
    assert low < high
    assert bootstrap_ci(values, seed=0) == (low, high)
    assert bootstrap_ci(values, seed=1) != (low, high)


def test_bootstrap_ci_shrinks_with_n():
    small = [1.0, 0.0, 1.0, 0.0] * 5  # 20 values, mean 0.5
    large = small * 50  # 1,000 values, same mean
    small_low, small_high = bootstrap_ci(small)
    large_low, large_high = bootstrap_ci(large)
    assert large_low <= 0.5 <= large_high
    # The width goes as 1 / sqrt(n): 50 times the data, about 7 times narrower.
    assert (large_high - large_low) < (small_high - small_low) / 4


@pytest.mark.parametrize("values", [[0.7] * 9, [1.0], [0.0, 0.0], [0.1] * 3])
def test_bootstrap_ci_of_equal_values_has_zero_width(values):
    assert bootstrap_ci(values) == (values[0], values[0])
    result = score_all("exact", ["a"] * len(values), ["a"] * len(values))
    assert result.ci == (1.0, 1.0) and result.mean == 1.0


def test_bootstrap_ci_refuses_nothing():
    with pytest.raises(ValueError):
        bootstrap_ci([])
