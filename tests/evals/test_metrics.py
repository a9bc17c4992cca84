"""Task metrics on hand-made cases, malformed model output, the auto choice, bootstrap intervals."""

from __future__ import annotations

import json

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.evals.metrics import (
    METRICS,
    Call,
    bootstrap_ci,
    call_score,
    calls_tools,
    choose_metric,
    exact,
    exact_match,
    json_fields,
    json_fields_score,
    label_accuracy,
    list_items,
    match_calls,
    rouge_l,
    score_all,
    set_f1,
    tool_calls_in,
    tool_calls_score,
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
        "tool-calls": '<tool_call>{"name": "land_drone", "arguments": {}}</tool_call>',
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


# --- tool calls ------------------------------------------------------------------------------


def call(name: str, arguments: dict | str) -> str:
    """A call as a model writes it (and as `data.render.tool_call_text` writes a reference)."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return f'<tool_call>{{"name": "{name}", "arguments": {args}}}</tool_call>'


MOVE = call("move", {"direction": "up", "distance": 10})


@pytest.mark.parametrize(
    ("output", "score", "function", "agreed", "predicted", "valid"),
    [
        (MOVE, 1.0, True, 2, 2, True),
        (call("move", {"distance": 10, "direction": "up"}), 1.0, True, 2, 2, True),  # order
        (call("go", {"direction": "up", "distance": 10}), 0.0, False, 0, 2, True),  # wrong name
        (call("move", {"direction": "up"}), 0.0, True, 1, 1, True),  # missing argument
        (call("move", {"direction": "up", "distance": 10, "speed": 3}), 0.0, True, 2, 3, True),
        (call("move", {"direction": "up", "distance": "10"}), 0.0, True, 1, 2, True),  # "10"≠10
        ('<tool_call>{"name": "move", "arguments": {"direction": "up", "dist', 0.0, False, 0, 0, False),
        (call("move", '"up 10"'), 0.0, True, 0, 0, False),  # arguments not an object
        ('{"name": "move", "arguments": {"direction": "up", "distance": 10}}', 1.0, True, 2, 2, True),
        ("I'll move the drone up 10 m.", 0.0, False, 0, 0, None),  # no call at all
    ],
    ids=["exact", "order", "wrong-name", "missing", "extra", "type", "malformed", "not-object",
         "bare-object", "prose"],
)  # fmt: skip
def test_tool_call_metric_on_known_cases(output, score, function, agreed, predicted, valid):
    scored = call_score(output, MOVE)
    assert tool_calls_score(output, MOVE) == score
    assert (scored.function, scored.agreed, scored.predicted, scored.expected) == (
        function, agreed, predicted, 2,
    )  # fmt: skip
    assert scored.tried is (valid is not None)
    if valid is not None:
        assert scored.valid_json is valid


def test_no_call_expected_wants_no_call():
    """A reference without a call (a clarifying question) is right only when nothing is called."""
    assert tool_calls_score("Which direction?", "Please say which direction.") == 1.0
    assert call_score("", "Please say which direction.").function is True
    assert tool_calls_score(MOVE, "Please say which direction.") == 0.0


def test_several_calls_pair_by_name_then_arguments_in_any_order():
    land, photo = call("land", {"location": "home"}), call("camera", {"mode": "photo"})
    two_photos = call("camera", {"mode": "photo"}) + call("camera", {"mode": "video"})
    assert tool_calls_score(f"{photo}\n{land}", f"{land}\n{photo}") == 1.0
    # Same name twice: each reference call pairs with the answer's call that agrees most.
    swapped = call("camera", {"mode": "video"}) + call("camera", {"mode": "photo"})
    assert tool_calls_score(swapped, two_photos) == 1.0
    one = call_score(land, f"{land}\n{photo}")  # one of two calls made
    assert (one.exact, one.function, one.exact_arguments, one.calls_expected) == (
        False,
        False,
        1,
        2,
    )
    wrong_arg = call_score(
        call("camera", {"mode": "video"}) + photo, two_photos.replace("video", "panorama")
    )
    assert (wrong_arg.agreed, wrong_arg.exact_arguments) == (1, 1)
    assert match_calls([], [Call("x", {})]) == []


def test_score_all_on_tool_calls_reports_the_figures():
    references = [MOVE, MOVE, call("land", {}), "Which direction?"]
    outputs = [
        call("move", {"distance": 10, "direction": "up"}),  # right, other order
        call("move", {"direction": "up"}),  # one argument missing
        '<tool_call>{"name": "land", "arguments": {',  # broken JSON
        "Up or down?",  # rightly no call
    ]
    result = score_all("auto", outputs, references)
    assert result.metric == "tool-calls"
    assert result.scores == result.exact == [1.0, 0.0, 0.0, 1.0]
    assert result.valid_json == pytest.approx(2 / 3)  # of the three answers that tried to call
    assert result.figures == {
        "function": 0.75,
        "argument precision": 1.0,  # 3 arguments given, 3 right
        "argument recall": 0.75,  # 4 expected
        "arguments exact": pytest.approx(1 / 3),  # of 3 reference calls, one made exactly
    }
    assert json.loads(json.dumps(result.to_dict()))["figures"]["function"] == 0.75


def test_tool_call_data_is_detected_and_its_metric_refused_without_calls():
    assert choose_metric([MOVE, "Which direction?"]) == "tool-calls"
    # A JSON object that happens to have a "name" is an object answer, not a call.
    assert choose_metric(['{"name": "Ana", "city": "Tunis"}'] * 3) == "json-fields"
    assert calls_tools(MOVE) and not calls_tools('{"name": "move", "arguments": {}}')
    with pytest.raises(TunesmithError, match="call tools"):
        score_all("tool-calls", ["a"], ["plain answer"])


def test_a_reference_written_by_render_reads_back_as_its_calls():
    """compare's references are `tool_call_text` of the answer: the metric reads them back."""
    from tunesmith.data.records import FunctionCall, Message, ToolCall
    from tunesmith.data.render import tool_call_text

    answer = Message(
        role="assistant",
        tool_calls=[ToolCall(id="c1", function=FunctionCall(name="move", arguments='{"distance": 10, "direction": "up"}'))],
    )  # fmt: skip
    reference = tool_call_text(answer)
    assert tool_calls_in(reference) == ([Call("move", {"distance": 10, "direction": "up"})], 1)
    assert tool_calls_score(MOVE, reference) == 1.0
