"""Format detection, conversion to canonical records, line numbers, and whole-file failures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tunesmith.data.readers import parse_mapping, read
from tunesmith.data.records import Conversation, PreferencePair
from tunesmith.data.split import write_jsonl
from tunesmith.errors import NotFoundError, TunesmithError

FILES = Path(__file__).parent / "files"
QA_MAPPING = {"system": "=You answer quizzes.", "user": "question", "assistant": "answer"}


def roles(conversation: Conversation) -> list[str]:
    return [m.role for m in conversation.messages]


@pytest.mark.parametrize(
    ("name", "fmt", "container", "lines"),
    [
        ("chat.jsonl", "chat", "jsonl", [1, 2, 4, 5, 6]),
        ("alpaca.json", "alpaca", "json", [2, 7, 13]),
        ("alpaca.jsonl", "alpaca", "jsonl", [1, 2]),
        ("sharegpt.json", "sharegpt", "json", [2, 9]),
        ("sharegpt.jsonl", "sharegpt", "jsonl", [1, 2]),
        ("prompt_completion.jsonl", "prompt_completion", "jsonl", [1, 2, 3]),
        ("prompt_completion.csv", "prompt_completion", "csv", [2]),
        ("dpo.jsonl", "dpo", "jsonl", [1, 2]),
    ],
)
def test_detects_format_and_keeps_lines(name, fmt, container, lines):
    result = read(FILES / name)
    assert (result.format, result.container) == (fmt, container)
    assert result.problems == []
    assert [r.line for r in result.records] == lines
    assert result.n_examples == len(lines)


@pytest.mark.parametrize(
    ("name", "mapping"),
    [
        ("chat.jsonl", None),
        ("alpaca.json", None),
        ("sharegpt.json", None),
        ("sharegpt.jsonl", None),
        ("prompt_completion.jsonl", None),
        ("dpo.jsonl", None),
        ("qa.csv", QA_MAPPING),
    ],
)
def test_round_trip_through_canonical_jsonl(tmp_path, name, mapping):
    first = read(FILES / name, mapping=mapping)
    write_jsonl(first.records, tmp_path / "canonical.jsonl")
    again = read(tmp_path / "canonical.jsonl")
    assert again.format == ("dpo" if first.format == "dpo" else "chat")
    assert again.problems == []

    def without_line(records):
        return [r.model_copy(update={"line": None}) for r in records]

    assert without_line(again.records) == without_line(first.records)


def test_chat_features_become_canonical():
    records = read(FILES / "chat.jsonl").records
    assert records[1].messages[1].content == "Capital of Italy?"  # text parts joined
    assert records[1].messages[0].role == "developer"
    assert records[2].messages[1].weight == 0
    calls = records[3].messages[1]
    assert calls.content is None and calls.tool_calls[0].function.arguments == '{"altitude": 100}'
    assert records[3].parallel_tool_calls is False
    legacy = records[4]
    assert legacy.tools == [{"type": "function", "function": legacy.tools[0]["function"]}]
    assert legacy.messages[1].tool_calls[0].id == "call_0"
    assert legacy.messages[2].role == "tool" and legacy.messages[2].tool_call_id == "call_0"


def test_alpaca_system_history_and_input():
    first, second, third = read(FILES / "alpaca.json").records
    assert first.to_openai()["messages"] == [
        {"role": "user", "content": "Translate to French.\nGood morning"},
        {"role": "assistant", "content": "Bonjour"},
    ]
    assert roles(second) == ["system", "user", "assistant", "user", "assistant"]
    assert second.messages[1].content == "Name an even number."
    assert third.messages[0].content == "Say yes."


def test_sharegpt_function_call_and_observation():
    plain, tools = read(FILES / "sharegpt.json").records
    assert roles(plain) == ["system", "user", "assistant"]
    assert roles(tools) == ["user", "assistant", "tool", "assistant"]
    call = tools.messages[1].tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_0",
        "weather",
        '{"city": "Oslo"}',
    )
    assert tools.messages[2].tool_call_id == "call_0"
    assert tools.tools[0]["type"] == "function"
    assert tools.tools[0]["function"]["name"] == "weather"


def test_prompt_completion_keeps_text_and_drops_empty_prompt():
    records = read(FILES / "prompt_completion.jsonl").records
    assert records[0].messages[1].content == " positive"
    assert roles(records[2]) == ["assistant"]


def test_dpo_pairs():
    pair = read(FILES / "dpo.jsonl").records[1]
    assert isinstance(pair, PreferencePair)
    assert roles(pair.input) == ["system", "user"]
    assert pair.preferred_output[0].content == "Goodbye, take care!"
    assert pair.input.parallel_tool_calls is True


def test_csv_mapping_lines_are_physical_lines():
    result = read(FILES / "qa.csv", mapping=QA_MAPPING)
    assert (result.format, result.container) == ("columns", "csv")
    # header is line 1; the second row's cell spans lines 3-4; line 5 is blank
    assert [r.line for r in result.records] == [2, 3, 6]
    assert result.records[1].messages[1].content == "A question\nover two lines?"
    assert result.records[0].messages[0].content == "You answer quizzes."


def test_mapping_literal_fills_columns():
    mapping = {"user": "=Topic {topic}: {question} {not_a_column}", "assistant": "answer"}
    record = read(FILES / "qa.csv", mapping=mapping).records[0]
    assert record.messages[0].content == "Topic math: What is 2+2? {not_a_column}"


def test_mapping_reports_empty_cells(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("q,a\nHi,Hello\n,Lonely answer\nNo answer,\n", encoding="utf-8")
    result = read(path, mapping={"user": "q", "assistant": "a"})
    found = [(p.kind, p.line, p.field) for p in result.problems]
    assert found == [("missing_field", 3, "q"), ("empty_assistant_answer", 4, "a")]
    assert len(result.records) == 1 and result.n_examples == 3


def test_json_rows_read_by_mapping(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"text": "Great", "label": 1}\n{"text": "Bad", "label": 0}\n')
    result = read(path, mapping={"user": "text", "assistant": "label"})
    assert [r.messages[1].content for r in result.records] == ["1", "0"]


def test_parquet_with_nested_messages(tmp_path):
    pd = pytest.importorskip("pandas")
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]},
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Yo", "weight": 1},
            ]
        },
    ]
    path = tmp_path / "chat.parquet"
    pd.DataFrame(rows).to_parquet(path)
    result = read(path)
    # Arrow gives every message every key of the schema (weight: null): null means absent.
    assert (result.format, result.container, result.problems) == ("chat", "parquet", [])
    assert result.records[0].messages[1].weight is None
    assert result.records[1].messages[1].weight == 1
    assert [r.line for r in result.records] == [1, 2]


def test_parquet_by_mapping(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "news.parquet"
    pd.DataFrame({"text": ["Stocks rise", "Team wins"], "label": [2, 1]}).to_parquet(path)
    result = read(path, mapping={"user": "text", "assistant": "label"})
    assert [r.messages[1].content for r in result.records] == ["2", "1"]


def test_hugging_face_dataset_on_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"instruction": ["Say hi", "Say bye"], "output": ["Hi", "Bye"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "single"))
    result = read(tmp_path / "single")
    assert (result.format, result.container, len(result.records)) == ("alpaca", "hf_dataset", 2)

    split = datasets.Dataset.from_dict(rows)
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "dict"))
    assert len(read(tmp_path / "dict").records) == 2
    datasets.DatasetDict({"a": split, "b": split}).save_to_disk(str(tmp_path / "splits"))
    with pytest.raises(TunesmithError, match="no 'train' split"):
        read(tmp_path / "splits")


def test_explicit_format_overrides_detection(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "x"}]}\n')
    result = read(path, fmt="alpaca")
    assert result.format == "alpaca"
    assert [p.kind for p in result.problems] == ["missing_field", "missing_field"]


def test_detection_survives_a_bad_first_line(tmp_path):
    good = '{"prompt": "a", "completion": "b"}'
    path = tmp_path / "pc.jsonl"
    path.write_text(f'{{"promt": "typo"}}\n{good}\n{good}\n')
    result = read(path)
    assert result.format == "prompt_completion"
    first = result.problems[0]
    assert (first.kind, first.line, first.field) == ("missing_field", 1, "prompt")


def test_unicode_line_separator_inside_a_string(tmp_path):
    path = tmp_path / "sep.jsonl"
    path.write_text('{"prompt": "a\u2028b", "completion": "c"}\n', encoding="utf-8")
    assert read(path).records[0].messages[0].content == "a\u2028b"


def test_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffprompt,completion\r\nHello,World\r\n".encode())
    result = read(path)
    assert result.format == "prompt_completion" and result.records[0].line == 2


# Whole-file failures: a TunesmithError that names the file.


def test_missing_file(tmp_path):
    with pytest.raises(NotFoundError, match=r"nope\.jsonl"):
        read(tmp_path / "nope.jsonl")


def test_plain_folder(tmp_path):
    with pytest.raises(TunesmithError, match="is a folder") as info:
        read(tmp_path)
    assert str(tmp_path) in info.value.message


def test_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "latin1.jsonl"
    data = b'{"prompt": "ok", "completion": "ok"}\n{"prompt": "caf\xe9"}\n'
    path.write_bytes(data)
    with pytest.raises(TunesmithError) as info:
        read(path)
    assert "latin1.jsonl" in info.value.message
    assert f"byte {data.index(0xE9)} (line 2) is 0xe9" in info.value.message


@pytest.mark.parametrize("content", ["", "  \n\n", "[]", "prompt,completion\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / ("empty.csv" if "," in content else "empty.jsonl")
    path.write_text(content)
    with pytest.raises(TunesmithError, match=re.escape(path.name)):
        read(path)


def test_unknown_format_lists_keys_and_formats():
    with pytest.raises(TunesmithError) as info:
        read(FILES / "unknown.jsonl")
    error = info.value
    assert "unknown.jsonl" in error.message and "'text', 'label'" in error.message
    assert "Alpaca" in error.hint and "ShareGPT" in error.hint
    assert '{"user": "text", "assistant": "label"}' in error.hint


def test_csv_without_mapping_asks_for_one():
    with pytest.raises(TunesmithError, match=r"qa\.csv has the columns 'question', 'answer'"):
        read(FILES / "qa.csv")


def test_unknown_column_suggests_the_closest():
    with pytest.raises(TunesmithError) as info:
        read(FILES / "qa.csv", mapping={"user": "questoin", "assistant": "answer"})
    assert "qa.csv has no column 'questoin'" in info.value.message
    assert "Did you mean 'question'?" in info.value.hint
    assert "'topic'" in info.value.hint


def test_mapping_needs_user_and_assistant():
    with pytest.raises(TunesmithError, match="Did you mean 'assistant' for 'asistant'"):
        read(FILES / "qa.csv", mapping={"user": "question", "asistant": "answer"})


def test_unknown_format_name():
    with pytest.raises(TunesmithError, match="Unknown data format 'openai'"):
        read(FILES / "chat.jsonl", fmt="openai")


def test_parse_mapping():
    assert parse_mapping('{"user": "q", "assistant": "a"}') == {"user": "q", "assistant": "a"}
    assert parse_mapping(["user=q", "assistant=a", "system==Be kind"]) == {
        "user": "q",
        "assistant": "a",
        "system": "=Be kind",
    }
    with pytest.raises(TunesmithError, match="Cannot read the mapping item 'user'"):
        parse_mapping(["user"])
