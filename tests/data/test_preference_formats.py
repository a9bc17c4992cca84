"""TRL preference, KTO and RFT files: reading, conversion, and the method's checks at file:line:field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.data.checks import check
from tunesmith.data.issues import KINDS
from tunesmith.data.preference_formats import to_kto
from tunesmith.data.readers import read
from tunesmith.data.records import Conversation, KTOExample, PreferencePair, RFTExample
from tunesmith.data.split import write_jsonl
from tunesmith.errors import TunesmithError

USER = {"role": "user", "content": "Sky colour?"}


def write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def located(issues) -> list[tuple[str, int | None, str | None]]:
    return [(i.kind, i.line, i.field) for i in issues]


def says(content: str) -> dict:
    return {"role": "assistant", "content": content}


def pair_rows(n: int = 10) -> list[dict]:
    return [{"prompt": f"Q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(n)]


# --- TRL preference ------------------------------------------------------------------------------


def test_standard_trl_preference(tmp_path):
    result = read(write(tmp_path / "p.jsonl", pair_rows(2)))
    assert (result.format, result.kind, result.problems) == ("trl_preference", "pairs", [])
    pair = result.records[1]
    assert isinstance(pair, PreferencePair) and pair.line == 2
    assert pair.to_openai() == {
        "input": {"messages": [{"role": "user", "content": "Q1"}]},
        "preferred_output": [says("good 1")],
        "non_preferred_output": [says("bad 1")],
    }


def test_conversational_trl_preference(tmp_path):
    row = {
        "prompt": [{"role": "system", "content": "Be brief."}, USER],
        "chosen": [says("Blue.")],
        "rejected": [says("Green.")],
    }
    (pair,) = read(write(tmp_path / "p.jsonl", [row])).records
    assert [m.role for m in pair.input.messages] == ["system", "user"]
    assert pair.preferred_output[0].content == "Blue."
    assert pair.non_preferred_output[0].content == "Green."


def test_conversational_implicit_prompt(tmp_path):
    row = {"chosen": [USER, says("Blue.")], "rejected": [USER, says("Green.")]}
    (pair,) = read(write(tmp_path / "p.jsonl", [row])).records
    assert pair.input.messages[0].content == "Sky colour?" and len(pair.input.messages) == 1
    assert [m.content for m in pair.preferred_output + pair.non_preferred_output] == [
        "Blue.",
        "Green.",
    ]


def test_standard_implicit_prompt_splits_at_a_word(tmp_path):
    rows = [
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},
        {"chosen": "The cat sat.", "rejected": "The car sat."},  # no split inside "ca|t"
    ]
    first, second = read(write(tmp_path / "p.jsonl", rows)).records
    assert first.input.messages[0].content == "The sky is"
    assert first.preferred_output[0].content == " blue."  # the space stays with the answer
    assert first.non_preferred_output[0].content == " green."
    assert second.input.messages[0].content == "The"
    assert second.preferred_output[0].content == " cat sat."


def test_trl_pairs_round_trip_through_openai_dpo(tmp_path):
    first = read(write(tmp_path / "p.jsonl", pair_rows(3)))
    write_jsonl(first.records, tmp_path / "canonical.jsonl")
    again = read(tmp_path / "canonical.jsonl")
    assert again.format == "dpo" and again.records == first.records


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {"prompt": "Q", "chosen": "same", "rejected": "same"},
            ("identical_preference", "rejected"),
        ),
        ({"prompt": "Q", "chosen": "yes"}, ("missing_field", "rejected")),
        ({"prompt": "Q", "rejected": [says("no")]}, ("missing_field", "chosen")),
        (
            {"prompt": "Q", "chosen": [says("a"), says("b")], "rejected": "c"},
            ("multi_turn_output", "chosen"),
        ),
        (
            {"prompt": [USER, says("x")], "chosen": "a", "rejected": "b"},
            ("invalid_prompt_end", "prompt[1].role"),
        ),
        ({"chosen": "Yes", "rejected": "No"}, ("no_shared_prompt", "chosen")),
        (
            {"chosen": [USER, says("a")], "rejected": [USER, says("a")]},
            ("identical_preference", "rejected"),
        ),
        (
            {"chosen": [USER, says("a")], "rejected": [USER, USER, says("b")]},
            ("invalid_field", "rejected[1].role"),
        ),
    ],
)
def test_trl_pair_problems_are_located(tmp_path, row, expected):
    path = write(tmp_path / "p.jsonl", [*pair_rows(10), row])
    report = check(path, method="dpo")
    assert located(report.errors) == [(expected[0], 11, expected[1])]
    assert report.errors[0].file == str(path)
    assert KINDS[expected[0]][0] == "error"


def test_openai_dpo_answer_must_be_one_message(tmp_path):
    row = {
        "input": {"messages": [USER]},
        "preferred_output": [says("a"), says("b")],
        "non_preferred_output": [says("c")],
    }
    report = check(write(tmp_path / "d.jsonl", [row]), min_examples=0)
    assert located(report.errors) == [("multi_turn_output", 1, "preferred_output")]


# --- tables with a preference mapping ------------------------------------------------------------

PAIR_MAPPING = {"system": "=Be kind.", "prompt": "q", "chosen": "good", "rejected": "bad"}


def test_csv_preference_mapping(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("q,good,bad\nHi,Hello!,Go away.\nBye,,See you\n", encoding="utf-8")
    result = read(path, mapping=PAIR_MAPPING)
    assert (result.format, result.kind) == ("columns", "pairs")
    (pair,) = result.records
    assert [m.role for m in pair.input.messages] == ["system", "user"]
    assert (pair.line, pair.preferred_output[0].content) == (2, "Hello!")
    assert located(result.problems) == [("missing_field", 3, "good")]


def test_parquet_preference_mapping(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "pairs.parquet"
    frame = {"q": ["A", "B"], "good": ["yes", "same"], "bad": ["no", "same"]}
    pd.DataFrame(frame).to_parquet(path)
    result = read(path, mapping={"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert [p.input.messages[0].content for p in result.records] == ["A"]
    assert located(result.problems) == [("identical_preference", 2, "bad")]


def test_mapping_mixing_chat_and_preference_roles(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("q,good,bad\nHi,Hello!,Go away.\n", encoding="utf-8")
    with pytest.raises(TunesmithError, match="mixes chat roles") as info:
        read(path, mapping={"user": "q", "chosen": "good", "rejected": "bad"})
    assert '"prompt", "chosen"' in info.value.hint
    with pytest.raises(TunesmithError, match="must map 'prompt', 'chosen' and 'rejected'"):
        read(path, mapping={"prompt": "q", "chosen": "good"})
    with pytest.raises(TunesmithError, match="Did you mean 'rejected' for 'rejectd'"):
        read(path, mapping={"prompt": "q", "chosen": "good", "rejectd": "bad"})


# --- KTO -----------------------------------------------------------------------------------------


def kto_rows(n: int = 10) -> list[dict]:
    return [{"prompt": f"Q{i}", "completion": f"A{i}", "label": i % 2 == 0} for i in range(n)]


def test_kto_standard_and_conversational(tmp_path):
    rows = [
        {"prompt": "The sky is", "completion": " blue.", "label": True},
        {"prompt": [USER], "completion": [says("Green.")], "label": False},
    ]
    result = read(write(tmp_path / "k.jsonl", rows))
    assert (result.format, result.kind, result.problems) == ("kto", "kto", [])
    good, bad = result.records
    assert isinstance(good, KTOExample) and good.label and not bad.label
    assert good.input.messages[0].content == "The sky is" and good.output[0].content == " blue."
    assert bad.output[0].content == "Green." and bad.line == 2
    write_jsonl(result.records, tmp_path / "canonical.jsonl")
    assert read(tmp_path / "canonical.jsonl").records == result.records


def test_kto_labels_in_a_csv(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("prompt,completion,label\nQ,A,true\nQ,B,False\nQ,C,maybe\n")
    result = read(path)
    assert result.format == "kto"
    assert [r.label for r in result.records] == [True, False]
    assert located(result.problems) == [("invalid_label", 4, "label")]


def test_a_non_boolean_label_column_is_prompt_completion(tmp_path):
    path = write(tmp_path / "pc.jsonl", [{"prompt": "Q", "completion": "A", "label": "spam"}])
    assert read(path).format == "prompt_completion"


def test_kto_checks(tmp_path):
    rows = [*kto_rows(10), {"prompt": "Q", "completion": "A", "label": 1}]
    report = check(write(tmp_path / "k.jsonl", rows), method="kto")
    assert located(report.errors) == [("invalid_label", 11, "label")]
    one_sided = [{**r, "label": True} for r in kto_rows(10)]
    report = check(write(tmp_path / "good.jsonl", one_sided), method="kto")
    assert report.ok
    (warning,) = [i for i in report.warnings if i.kind == "one_sided_labels"]
    assert "All 10 examples are labelled desirable" in warning.message and warning.line is None


def test_pairs_convert_to_kto(tmp_path):
    pairs = read(write(tmp_path / "p.jsonl", pair_rows(2))).records
    kto = read(write(tmp_path / "k.jsonl", kto_rows(1))).records
    examples = to_kto([*pairs, *kto])
    assert [(e.line, e.label, e.output[0].content) for e in examples] == [
        (1, True, "good 0"),
        (1, False, "bad 0"),
        (2, True, "good 1"),
        (2, False, "bad 1"),
        (1, True, "A0"),
    ]
    assert examples[0].input == pairs[0].input
    with pytest.raises(TunesmithError, match="not a preference example"):
        to_kto([Conversation(messages=[USER, says("x")], line=3)])


# --- RFT -----------------------------------------------------------------------------------------


def rft_rows(n: int = 10) -> list[dict]:
    return [{"messages": [USER], "reference_answer": f"blue {i}", "id": i} for i in range(n)]


def test_rft_keeps_the_item_fields(tmp_path):
    tools = [{"type": "function", "function": {"name": "look", "parameters": {}}}]
    rows = [{**rft_rows(1)[0], "tools": tools}]
    result = read(write(tmp_path / "r.jsonl", rows), fmt="rft")
    (example,) = result.records
    assert isinstance(example, RFTExample) and result.kind == "rft"
    assert example.item == {"reference_answer": "blue 0", "id": 0}
    assert example.tools == tools and example.messages[0].content == "Sky colour?"
    assert example.to_openai() == rows[0]


def test_rft_detection(tmp_path):
    # Every example ends with the user's message: RFT. One chat example among them: chat.
    assert read(write(tmp_path / "r.jsonl", rft_rows(3))).format == "rft"
    mixed = [*rft_rows(3), {"messages": [USER, says("Blue.")]}]
    assert read(write(tmp_path / "c.jsonl", mixed)).format == "chat"


def test_rft_checks(tmp_path):
    rows = [
        *rft_rows(10),
        {"messages": [USER, says("Blue.")], "reference_answer": "x", "id": 10},
        {"messages": [], "reference_answer": "x", "id": 11},
        {"messages": [USER], "id": 12},
        {"messages": [USER]},
    ]
    path = write(tmp_path / "r.jsonl", rows)
    report = check(path, fmt="rft", method="reinforcement", item_fields=["reference_answer"])
    assert located(report.errors) == [
        ("rft_last_message_not_user", 11, "messages[1].role"),
        ("missing_messages_list", 12, "messages"),
        ("missing_item_field", 13, "reference_answer"),
        ("missing_item_field", 14, "reference_answer"),
    ]
    assert ("no_item_fields", 14, None) in located(report.warnings)
    report = check(path, fmt="rft")
    assert ("inconsistent_item_fields", 13, "reference_answer") in located(report.warnings)


# --- methods -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "fmt", "ok", "wrong"),
    [
        (pair_rows(), "auto", ["dpo", "orpo", "kto"], ["supervised", "reinforcement"]),
        (kto_rows(), "auto", ["kto"], ["supervised", "dpo", "reinforcement"]),
        (rft_rows(), "rft", ["reinforcement"], ["supervised", "dpo", "kto"]),
    ],
)
def test_methods_and_the_examples_they_train_on(tmp_path, rows, fmt, ok, wrong):
    path = write(tmp_path / "data.jsonl", rows)
    for method in ok:
        assert "wrong_method" not in [i.kind for i in check(path, fmt=fmt, method=method).issues]
    for method in wrong:
        (issue,) = [i for i in check(path, fmt=fmt, method=method).errors]
        assert (issue.kind, issue.file, issue.line) == ("wrong_method", str(path), None)


def test_chat_given_for_reinforcement_names_the_rft_format(tmp_path):
    rows = [{"messages": [USER, says(f"A{i}")]} for i in range(10)]
    (issue,) = check(write(tmp_path / "c.jsonl", rows), method="reinforcement").errors
    assert issue.kind == "wrong_method" and 'format "rft"' in issue.message


def test_stats_for_every_kind(tmp_path, tokenizer):
    files = [
        (write(tmp_path / "p.jsonl", pair_rows()), "auto"),
        (write(tmp_path / "k.jsonl", [*kto_rows(), *kto_rows()[:1]]), "auto"),
        (write(tmp_path / "r.jsonl", rft_rows()), "rft"),
    ]
    for path, fmt in files:
        report = check(path, tokenizer, fmt=fmt)
        assert report.stats is not None and report.stats.n_examples >= 10, path
    rft = check(files[2][0], tokenizer, fmt="rft").stats
    assert rft.assistant_tokens.max == 0 and rft.total_tokens.min > 0


def test_long_pairs_cut_the_prompt_or_fail(tmp_path, tokenizer):
    long_prompt = {"prompt": "word " * 200, "chosen": "short", "rejected": "also short"}
    long_answer = {"prompt": "Q", "chosen": "word " * 200, "rejected": "no"}
    path = write(tmp_path / "p.jsonl", [*pair_rows(), long_prompt, long_answer])
    report = check(path, tokenizer, max_length=100, method="dpo")
    assert located(report.warnings) == [
        ("prompt_truncated", 11, None),
        ("no_system_message", None, None),
    ]
    assert located(report.errors) == [("too_long", 12, None)]
    assert "end of an answer" in report.errors[0].message
    rft = write(
        tmp_path / "r.jsonl",
        [*rft_rows(), {"messages": [{"role": "user", "content": "w " * 200}], "a": 1}],
    )
    report = check(rft, tokenizer, fmt="rft", max_length=100)
    assert located(report.errors) == [("too_long", 11, None)]
