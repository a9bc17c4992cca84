"""Train/validation split, atomic canonical JSONL, and conversion between formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.data.readers import read
from tunesmith.data.records import Conversation, Message
from tunesmith.data.split import convert, split, write_jsonl
from tunesmith.errors import DataError, TunesmithError

FILES = Path(__file__).parent / "files"


def example(n: int) -> Conversation:
    messages = [Message(role="user", content=f"Q{n}"), Message(role="assistant", content=f"A{n}")]
    return Conversation(messages=messages, line=n + 1)


def test_split_is_deterministic_and_keeps_order():
    records = [example(n) for n in range(50)]
    train, valid = split(records, validation=0.2, seed=7)
    assert (len(train), len(valid)) == (40, 10)
    assert split(records, validation=0.2, seed=7) == (train, valid)
    assert split(records, validation=0.2, seed=8)[1] != valid
    assert [r.line for r in train] == sorted(r.line for r in train)
    assert sorted(r.line for r in train + valid) == [r.line for r in records]


def test_split_never_empties_either_side():
    train, valid = split([example(0), example(1)], validation=0.9)
    assert (len(train), len(valid)) == (1, 1)
    train, valid = split([example(n) for n in range(5)], validation=0.01)
    assert (len(train), len(valid)) == (4, 1)


def test_copies_stay_on_one_side():
    records = [example(n % 10) for n in range(40)]  # every example four times
    for seed in range(5):
        train, valid = split(records, validation=0.25, seed=seed)
        assert {r.messages[0].content for r in train}.isdisjoint(
            r.messages[0].content for r in valid
        )


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_split_refuses_fractions_outside_zero_one(fraction):
    with pytest.raises(TunesmithError, match="between 0 and 1"):
        split([example(n) for n in range(10)], validation=fraction)


def test_split_refuses_a_single_distinct_example():
    with pytest.raises(TunesmithError, match="1 distinct"):
        split([example(0), example(0)])


def test_write_jsonl_replaces_atomically(tmp_path):
    path = tmp_path / "out" / "data.jsonl"
    write_jsonl([example(0)], path)
    write_jsonl([example(1), example(2)], path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["messages"][0]["content"] for line in lines] == ["Q1", "Q2"]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_write_jsonl_failure_is_a_tunesmith_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TunesmithError, match="Cannot write"):
        write_jsonl([example(0)], blocker / "data.jsonl")


def test_convert_writes_canonical_chat(tmp_path):
    out = tmp_path / "alpaca.jsonl"
    result = convert(FILES / "alpaca.json", out)
    assert result.format == "alpaca"
    again = read(out)
    assert again.format == "chat"
    assert [r.to_openai() for r in again.records] == [r.to_openai() for r in result.records]


def test_convert_with_a_mapping(tmp_path):
    out = tmp_path / "qa.jsonl"
    convert(FILES / "qa.csv", out, {"user": "question", "assistant": "answer"})
    assert len(read(out).records) == 3


def test_convert_refuses_a_file_with_errors(tmp_path):
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError) as info:
        convert(FILES / "bad_invalid_weight.jsonl", out)
    assert "training file line 2, messages[1].weight" in info.value.message
    assert info.value.report.errors[0].kind == "invalid_weight"
    assert not out.exists()
