"""The validation report: every issue kind at its line and field, the summary, the JSON form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.data.checks import check, summarize
from tunesmith.data.issues import KINDS
from tunesmith.data.readers import read
from tunesmith.errors import DataError

FILES = Path(__file__).parent / "files"
CHAT = '{{"messages": [{{"role": "user", "content": "Q{0}"}}, {{"role": "assistant", "content": "A{0}"}}]}}'


def located(issues) -> list[tuple[str, int | None, str | None]]:
    return [(i.kind, i.line, i.field) for i in issues]


def write_chat(path: Path, numbers) -> Path:
    path.write_text("".join(CHAT.format(n) + "\n" for n in numbers))
    return path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bad_invalid_json.jsonl", ("invalid_json", 2, None)),
        ("bad_data_type.jsonl", ("data_type", 3, None)),
        ("bad_data_type.csv", ("data_type", 3, None)),
        ("bad_missing_messages_list.jsonl", ("missing_messages_list", 2, "messages")),
        ("bad_message_missing_key.jsonl", ("message_missing_key", 2, "messages[0].content")),
        (
            "bad_tool_message_missing_id.jsonl",
            ("message_missing_key", 2, "messages[2].tool_call_id"),
        ),
        ("bad_message_unrecognized_key.jsonl", ("message_unrecognized_key", 2, "messages[0].text")),
        ("bad_unrecognized_role.jsonl", ("unrecognized_role", 2, "messages[0].role")),
        ("bad_unrecognized_role.json", ("unrecognized_role", 3, "conversations[1].from")),
        ("bad_missing_content.jsonl", ("missing_content", 2, "messages[0].content")),
        (
            "bad_example_missing_assistant_message.jsonl",
            ("example_missing_assistant_message", 3, "messages"),
        ),
        ("bad_empty_assistant_answer.jsonl", ("empty_assistant_answer", 2, "messages[1].content")),
        ("bad_invalid_weight.jsonl", ("invalid_weight", 2, "messages[1].weight")),
        ("bad_invalid_tool_calls.jsonl", ("invalid_tool_calls", 2, "messages[1].tool_calls")),
        (
            "bad_invalid_tool_arguments.jsonl",
            ("invalid_tool_arguments", 2, "messages[1].tool_calls[0].function.arguments"),
        ),
        ("bad_invalid_tools.jsonl", ("invalid_tools", 2, "tools")),
        ("bad_missing_field.jsonl", ("missing_field", 2, "output")),
        ("bad_invalid_field.jsonl", ("invalid_field", 2, "preferred_output[0].role")),
    ],
)
def test_each_bad_file_is_reported_at_its_line(name, expected):
    report = check(FILES / name)
    errors = [i for i in report.errors if i.kind != "too_few_examples"]
    assert located(errors) == [expected]
    issue = errors[0]
    assert issue.file == str(FILES / name)
    assert issue.severity == KINDS[issue.kind][0] == "error"
    assert issue.message.strip()
    assert not report.ok


def test_bad_row_yields_no_record_but_counts_as_an_example():
    result = read(FILES / "bad_unrecognized_role.jsonl")
    assert result.n_examples == 2 and len(result.records) == 1


def test_every_problem_of_a_message_is_reported(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "", "extra": 1}, '
        '{"role": "assistant", "content": "A", "weight": 0.5}]}\n'
    )
    found = located(check(path).errors)
    assert ("message_unrecognized_key", 1, "messages[0].extra") in found
    assert ("missing_content", 1, "messages[0].content") in found
    assert ("invalid_weight", 1, "messages[1].weight") in found


def test_assistant_tool_call_without_content_is_fine():
    report = check(FILES / "chat.jsonl")
    assert located(report.errors) == [("too_few_examples", None, None)]


def test_duplicate_is_a_warning_naming_the_first_copy():
    report = check(FILES / "duplicates.jsonl")
    (duplicate,) = [i for i in report.warnings if i.kind == "duplicate"]
    assert (duplicate.line, duplicate.severity) == (3, "warning")
    assert "line 1" in duplicate.message


def test_validation_overlap_names_both_lines(tmp_path):
    train = write_chat(tmp_path / "train.jsonl", range(12))
    valid = write_chat(tmp_path / "valid.jsonl", [100, 5])
    report = check(train, validation=valid)
    (overlap,) = [i for i in report.warnings if i.kind == "validation_overlap"]  # as on OpenAI
    assert (overlap.kind, overlap.file, overlap.line) == ("validation_overlap", str(valid), 2)
    assert "line 6" in overlap.message
    assert report.ok and report.n_validation_examples == 2
    assert overlap.where(report.file_label(overlap)) == "validation file line 2"


def test_too_few_examples_only_for_training(tmp_path):
    train = write_chat(tmp_path / "train.jsonl", range(9))
    valid = write_chat(tmp_path / "valid.jsonl", [100])
    report = check(train, validation=valid)
    assert located(report.errors) == [("too_few_examples", None, None)]
    assert check(write_chat(tmp_path / "ten.jsonl", range(10))).ok


def test_role_counts_are_aggregated_warnings(tmp_path):
    path = write_chat(tmp_path / "train.jsonl", range(10))
    report = check(path)
    assert report.ok
    (no_system,) = report.warnings
    assert (no_system.kind, no_system.line) == ("no_system_message", None)
    assert no_system.message.startswith("10 of 10 examples have no system message")
    prompt_only = check(FILES / "prompt_completion.jsonl")
    assert "1 of 3 examples have no user message" in next(
        i.message for i in prompt_only.warnings if i.kind == "no_user_message"
    )


def test_wrong_method():
    report = check(FILES / "dpo.jsonl", method="supervised")
    assert "wrong_method" in [i.kind for i in report.errors]
    report = check(FILES / "chat.jsonl", method="dpo")
    assert "wrong_method" in [i.kind for i in report.errors]
    assert "wrong_method" not in [i.kind for i in check(FILES / "dpo.jsonl", method="dpo").issues]


def test_identical_preference_is_an_error():
    # DPO's loss has no gradient on a pair whose answers are the same: nothing to learn.
    report = check(FILES / "dpo_identical.jsonl")
    assert ("identical_preference", 1, "non_preferred_output") in located(report.errors)
    assert read(FILES / "dpo_identical.jsonl").records == []


def test_too_long_with_the_real_tokenizer(tmp_path, tokenizer):
    numbers = list(range(10))
    path = write_chat(tmp_path / "train.jsonl", numbers)
    with path.open("a") as f:
        f.write(CHAT.format(" ".join(["word"] * 200)) + "\n")
    report = check(path, tokenizer, max_length=100)
    (too_long,) = report.errors
    assert (too_long.kind, too_long.line) == ("too_long", 11)
    assert "over max_length 100" in too_long.message and "truncated" in too_long.message
    assert report.stats is not None and report.stats.n_over_max_length == 1
    assert report.stats.n_examples == 11


def test_no_too_long_without_a_stated_limit(tmp_path, tokenizer):
    # SmolLM2's tokenizer states no model_max_length (transformers' 1e30 placeholder).
    report = check(write_chat(tmp_path / "train.jsonl", range(10)), tokenizer)
    assert report.ok and report.stats.max_length is None


def test_report_to_dict_is_json():
    report = check(FILES / "bad_invalid_weight.jsonl")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False
    assert data["format"] == "chat" and data["description"] == "OpenAI chat (JSONL)"
    assert data["errors"][0]["kind"] == "invalid_weight"
    assert data["stats"] is None


def test_summary_and_data_error(tmp_path):
    lines = ['{"messages": [{"role": "bot", "content": "x"}]}'] * 5
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = check(path, min_examples=0)
    text = summarize(report, limit=2)
    assert text.startswith("training file line 1, messages[0].role: Unrecognized role 'bot'")
    assert text.endswith("and 8 more errors")
    with pytest.raises(DataError) as info:
        report.raise_for_errors()
    assert info.value.report is report
    assert "10 errors" in info.value.message
    assert summarize(check(FILES / "chat.jsonl", min_examples=0)) == "no errors"


def test_check_accepts_a_read_result():
    result = read(FILES / "qa.csv", mapping={"user": "question", "assistant": "answer"})
    report = check(result, min_examples=0)
    assert report.ok and report.description == "column mapping (CSV)"


def test_a_lone_surrogate_escape_is_an_issue_not_a_tokenizer_crash(tmp_path, tokenizer):
    """Found by the fuzzer: `"\\ud800"` is valid JSON, but no text; the tokenizer raised."""
    path = tmp_path / "odd.jsonl"
    good = "".join(json.dumps({"prompt": f"q{n}", "completion": f"a{n}"}) + "\n" for n in range(12))
    path.write_text('{"prompt": "\\ud800", "completion": "\\udfff"}\n' + good)
    report = check(path, tokenizer)
    (issue,) = [i for i in report.errors if i.kind == "invalid_json"]
    assert issue.line == 1 and "surrogate" in issue.message
