"""Fuzzing every reader and `data check`: generated and mutated files in every supported format.

The properties, for any bytes in any format: `read()` and `check()` raise nothing but a
TunesmithError (DataError included), that is no traceback; every issue they report names its
file, and every issue about one example names its line. Each family below is bounded by
`max_examples`; the number of cases run is printed when the module ends (run with `-rA` or `-s`
to see it next to the results; the README quotes it).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.data.checks import check
from tunesmith.data.issues import Issue, RowIssues
from tunesmith.data.method_checks import KIND_METHODS
from tunesmith.data.readers import CONVERTERS, FORMATS, read
from tunesmith.errors import TunesmithError

EXAMPLES = 200  # files per family
ROW_EXAMPLES = 500  # rows per format for the converters alone (no file, so much cheaper)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Issues about the file as a whole, which no line can hold.
FILE_WIDE = {
    "too_few_examples",
    "wrong_method",
    "no_system_message",
    "no_user_message",
    "one_sided_labels",
}
CASES: Counter[str] = Counter()

# --- values: rows of the right shape, then up to two of their fields made wrong ----------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
)
any_json = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
# Text that a valid example may hold: never empty, sometimes odd (JSON-looking, U+2028, NUL).
words = st.sampled_from(
    ["hi", "Paris.", "Name three colors.", "{}", '{"a": 1}', "[1]", "a\u2028b", "é\x00"]
) | st.text(min_size=1, max_size=20).map(lambda text: "w" + text)
cells = words | st.sampled_from(["", " "])  # what a table cell may hold, empty included
DELETE = object()  # a corruption that removes the key instead of replacing its value


def record(required: dict, optional: dict | None = None) -> st.SearchStrategy:
    return st.fixed_dictionaries(required, optional=optional or {})


def nodes(value: object, path: tuple = ()) -> list[tuple]:
    """The path of every value inside a JSON value, the value itself first."""
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += nodes(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += nodes(child, (*path, index))
    return found


def replaced(value: object, path: tuple, new: object) -> object:
    """A copy of `value` with the node at `path` replaced by `new` (or removed: DELETE)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if not rest and new is DELETE:
        del copy[head]
    else:
        copy[head] = replaced(copy[head], rest, new)
    return copy


# Keys of every format, for a corruption that adds a key where it does not belong.
KEYS = [
    "role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal",
    "tools", "functions", "parallel_tool_calls", "messages", "input", "preferred_output",
    "non_preferred_output", "conversations", "from", "value", "instruction", "output", "history",
    "system", "prompt", "completion", "id", "type", "function", "arguments", "chosen", "rejected",
    "label", "text",
]  # fmt: skip


@st.composite
def broken(draw: st.DrawFn, rows: st.SearchStrategy) -> object:
    """A valid row with up to two nodes, at any depth, replaced by any JSON value, removed, or
    given a key of some format: every field gets its turn at being wrong, missing or stray."""
    row = draw(rows)
    for _ in range(draw(st.integers(0, 2))):
        path = draw(st.sampled_from(nodes(row)))
        target = row
        for step in path:
            target = target[step]
        if isinstance(target, dict) and draw(st.booleans()):
            key = draw(st.sampled_from(KEYS) | st.text(max_size=6))
            row = replaced(row, path, {**target, key: draw(any_json | words)})
        else:
            row = replaced(row, path, draw(any_json | st.just(DELETE)) if path else draw(any_json))
    return row


# Valid rows of each format: a broken one is a valid one with a field made wrong (`broken`).
arguments = st.dictionaries(st.text(max_size=4), scalars, max_size=2).map(json.dumps)
call = record({"name": words, "arguments": arguments})
tool = record({"type": st.just("function"), "function": record({"name": words})})
# Keys every message may carry (the reader accepts them on any role), so each gets corrupted too.
extras = {"name": words, "refusal": words, "tool_call_id": words}
system = record({"role": st.sampled_from(["system", "developer"]), "content": words}, extras)
user = record({"role": st.just("user"), "content": words}, extras)
reply = record(
    {"role": st.just("assistant"), "content": words},
    {**extras, "weight": st.sampled_from([0, 1])},
)


@st.composite
def tool_round(draw: st.DrawFn) -> list[dict]:
    """An assistant turn calling tools, then one tool message answering each call by its id."""
    ids = draw(st.lists(words, min_size=1, max_size=2, unique=True))
    calls = [{"id": i, "type": "function", "function": draw(call)} for i in ids]
    answers = [{"role": "tool", "tool_call_id": i, "content": draw(words)} for i in ids]
    return [{"role": "assistant", "tool_calls": calls}, *answers]


@st.composite
def chat_messages(draw: st.DrawFn, final_answer: bool = True) -> list[dict]:
    out = draw(st.lists(system, max_size=1))
    for _ in range(draw(st.integers(1, 2))):
        out += [draw(user), *(draw(tool_round()) if draw(st.booleans()) else []), draw(reply)]
    return out if final_answer else out[:-1]


conversation = record(
    {"messages": chat_messages()},
    {"tools": st.lists(tool, max_size=2), "parallel_tool_calls": st.booleans()},
)
answer = st.lists(record({"role": st.just("assistant"), "content": words}), min_size=1, max_size=1)
turns = st.lists(
    st.sampled_from(
        [
            [("human", "hi"), ("gpt", "Hello.")],
            [("human", "Weather?"), ("function_call", '{"name": "w", "arguments": {}}'),
             ("observation", "sun"), ("gpt", "Sunny.")],
        ]
    ),
    min_size=1,
    max_size=2,
).map(lambda rounds: [{"from": f, "value": v} for r in rounds for f, v in r])  # fmt: skip

ROWS: dict[str, st.SearchStrategy] = {
    "chat": conversation,
    "dpo": record(
        {
            "input": record({"messages": chat_messages(final_answer=False)}),
            "preferred_output": answer,
            "non_preferred_output": answer,
        }
    ),
    "alpaca": record(
        {"instruction": words, "output": words},
        {
            "input": words,
            "system": words,
            "history": st.lists(st.lists(words, min_size=2, max_size=2), max_size=2),
        },
    ),
    "sharegpt": record(
        {"conversations": turns},
        {"system": words, "tools": st.just('[{"name": "w", "parameters": {}}]')},
    ),
    "prompt_completion": record({"prompt": words, "completion": words}),
    # TRL's forms: text or messages, with the prompt given or implicit in both answers.
    "trl_preference": st.one_of(
        record({"prompt": words, "chosen": words, "rejected": words}),
        record(
            {
                "prompt": chat_messages(final_answer=False),
                "chosen": answer,
                "rejected": answer,
            }
        ),
        st.tuples(chat_messages(final_answer=False), answer, answer).map(
            lambda t: {"chosen": t[0] + t[1], "rejected": t[0] + t[2]}
        ),
        st.tuples(words, words, words).map(
            lambda t: {"chosen": f"{t[0]} {t[1]}", "rejected": f"{t[0]} {t[2]}"}
        ),
    ),
    "kto": st.one_of(
        record({"prompt": words, "completion": words, "label": st.booleans()}),
        record(
            {
                "prompt": chat_messages(final_answer=False),
                "completion": answer,
                "label": st.booleans(),
            }
        ),
    ),
    "rft": record(
        {"messages": st.tuples(chat_messages(), user).map(lambda t: [*t[0], t[1]])},
        {"reference_answer": words, "tools": st.lists(tool, max_size=2), "id": scalars},
    ),
    "text": record({"text": words}),  # TRL's language-modeling rows: plain text
}

# --- files: rows in a container, then broken at the byte level --------------------------------------

# Lines no JSON parser should meet without a plan: nesting past the recursion limit, a number
# past Python's 4,300-digit int limit, floats past double range, a lone surrogate, JSON's non-values.
NASTY_LINES = [
    "[" * 100_000,
    '{"messages": ' + "[" * 5_000 + "]" * 5_000 + "}",
    '{"prompt": 1' + "0" * 5_000 + ', "completion": "x"}',
    '{"prompt": "x", "completion": "y", "n": 1e999999}',
    '{"prompt": "\\ud800", "completion": "\\udfff"}',
    "NaN",
    "-Infinity",
    '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]',
    '"just a string"',
    "\x00",
]


def jsonl(rows: list) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode(
        "utf-8", "surrogatepass"
    )


def json_array(rows: list) -> bytes:
    return json.dumps(rows, ensure_ascii=False, indent=1).encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw: st.DrawFn, data: bytes, lines: bool = True) -> bytes:
    """The file's bytes, broken in up to three of the ways real files are broken."""
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        data = mutation(draw, data, lines)
    return data


def _truncate(draw: st.DrawFn, data: bytes, lines: bool) -> bytes:
    return data[: draw(st.integers(0, len(data)))]


def _bom(draw: st.DrawFn, data: bytes, lines: bool) -> bytes:
    return b"\xef\xbb\xbf" + data


def _crlf(draw: st.DrawFn, data: bytes, lines: bool) -> bytes:
    return data.replace(b"\n", b"\r\n")


def _bad_utf8(draw: st.DrawFn, data: bytes, lines: bool) -> bytes:
    at = draw(st.integers(0, len(data)))
    return (
        data[:at]
        + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]))
        + data[at:]
    )


def _flip(draw: st.DrawFn, data: bytes, lines: bool) -> bytes:
    if not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]


def _nasty_line(draw: st.DrawFn, data: bytes, lines: bool) -> bytes:
    if not lines:
        return data
    parts = data.split(b"\n")
    at = draw(st.integers(0, len(parts)))
    parts.insert(at, draw(st.sampled_from(NASTY_LINES)).encode("utf-8", "surrogatepass"))
    return b"\n".join(parts)


def _emptied(draw: st.DrawFn, data: bytes, lines: bool) -> bytes:
    return draw(st.sampled_from([b"", b"\n\n", b"   ", b"\xef\xbb\xbf", b"[]", b"[", b"{}"]))


MUTATIONS: list[Callable] = [_truncate, _bom, _crlf, _bad_utf8, _flip, _nasty_line, _emptied]


# --- the properties -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """A folder for the generated files. The number of cases run is written out when pytest
    ends (after its summary: output while a test runs is captured)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        request.config.add_cleanup(lambda: reporter.write_line(summary()))
    return tmp_path_factory.mktemp("fuzz")


def summary() -> str:
    families = ", ".join(f"{name} {n}" for name, n in sorted(CASES.items()))
    return f"data fuzzing: {sum(CASES.values())} cases ({families})"


def assert_located(issues: list[Issue], path: Path) -> None:
    for issue in issues:
        assert issue.file == str(path), issue
        assert issue.line is not None or issue.kind in FILE_WIDE, issue


def read_and_check(path: Path, family: str, **options) -> None:
    """Read and check `path`: a TunesmithError is fine (the file as a whole is unusable), any
    other exception fails the test; every issue must be located."""
    CASES[family] += 1
    try:
        result = read(path, **options)
        method = KIND_METHODS[result.kind]
        # The file as its own validation file too: every example overlaps.
        reports = [check(result, validation=v, method=method, **options) for v in (None, path)]
    except TunesmithError:
        return
    assert_located(result.problems, path)
    for report in reports:
        assert_located(report.issues, path)


def write(scratch: Path, name: str, data: bytes) -> Path:
    path = scratch / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("fmt", list(ROWS))
@FUZZ
@given(data=st.data())
def test_json_files_in_every_format(scratch, fmt, data):
    rows = data.draw(st.lists(broken(ROWS[fmt]), max_size=6))
    container = data.draw(st.sampled_from(["jsonl", "json"]))
    raw = data.draw(mutated(jsonl(rows) if container == "jsonl" else json_array(rows)))
    path = write(scratch, f"train.{container}", raw)
    forced = data.draw(st.sampled_from(["auto", fmt, "chat"]))  # detected, named, or misnamed
    read_and_check(path, f"{fmt} {container}", fmt=forced)


@pytest.mark.parametrize("fmt", list(ROWS))
@settings(max_examples=ROW_EXAMPLES, deadline=None)
@given(data=st.data())
def test_each_converter_on_rows_with_a_field_made_wrong(fmt, data):
    """The converters alone, many more rows than files: each row is a valid one with a field
    made wrong, missing or stray, so each field's every wrong type is met on its own."""
    row = data.draw(broken(ROWS[fmt]))
    CASES[f"{fmt} rows"] += 1
    problems: list[Issue] = []
    converted = CONVERTERS[fmt](row, RowIssues(7, problems))
    assert all(problem.line == 7 for problem in problems)
    assert (converted is None) == any(problem.severity == "error" for problem in problems)


@FUZZ
@given(data=st.data())
def test_files_mixing_formats(scratch, data):
    rows = data.draw(st.lists(broken(st.one_of(*ROWS.values())) | any_json, max_size=8))
    raw = data.draw(mutated(jsonl(rows)))
    read_and_check(write(scratch, "mixed.jsonl", raw), "mixed jsonl")


COLUMNS = [
    "prompt",
    "completion",
    "instruction",
    "output",
    "input",
    "question",
    "answer",
    "messages",
    "",
]


@st.composite
def table(draw: st.DrawFn, delimiter: str) -> bytes:
    header = draw(st.lists(st.sampled_from(COLUMNS) | st.text(max_size=6), min_size=1, max_size=4))
    cell = cells | st.sampled_from([delimiter, '"', '""', "\n", "\r\n", "1e999"])
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=len(header) + 1), max_size=6))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


MAPPINGS = st.sampled_from(
    [
        None,
        None,
        {"user": "question", "assistant": "answer"},
        {"system": "=Be {topic}.", "user": "prompt", "assistant": "=A: {output}"},
        {"prompt": "prompt", "chosen": "output", "rejected": "=Not {answer}"},
    ]
)


@pytest.mark.parametrize(("suffix", "delimiter"), [("csv", ","), ("tsv", "\t")])
@FUZZ
@given(data=st.data())
def test_tables(scratch, suffix, delimiter, data):
    raw = data.draw(mutated(data.draw(table(delimiter))))
    path = write(scratch, f"train.{suffix}", raw)
    read_and_check(path, suffix, mapping=data.draw(MAPPINGS))


PARQUET_TYPES = {
    "text": cells,
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(),
    "bool": st.booleans(),
    "texts": st.lists(cells, max_size=3),
    "messages": st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "x"]), "content": cells}
        ),
        max_size=3,
    ),
}


@st.composite
def parquet(draw: st.DrawFn) -> bytes:
    """A Parquet table whose columns have names of every format and values of any one type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = draw(
        st.lists(
            st.sampled_from([*COLUMNS, "conversations", "preferred_output"]),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    n = draw(st.integers(0, 5))
    columns = {}
    for name in names:
        values = st.none() | PARQUET_TYPES[draw(st.sampled_from(list(PARQUET_TYPES)))]
        columns[name] = draw(st.lists(values, min_size=n, max_size=n))
    out = io.BytesIO()
    pq.write_table(pa.table(columns), out)
    return out.getvalue()


@FUZZ
@given(data=st.data())
def test_parquet(scratch, data):
    raw = data.draw(parquet())
    if data.draw(st.booleans()):
        raw = data.draw(mutated(raw, lines=False))
    read_and_check(write(scratch, "train.parquet", raw), "parquet", mapping=data.draw(MAPPINGS))


@FUZZ
@given(
    raw=st.binary(max_size=200),
    suffix=st.sampled_from(["jsonl", "json", "csv", "tsv", "parquet", "txt"]),
)
def test_any_bytes_under_any_name(scratch, raw, suffix):
    read_and_check(write(scratch, f"noise.{suffix}", raw), "bytes")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_check_with_the_real_tokenizer(scratch, tokenizer, data):
    """With a tokenizer every example is rendered with the chat template: tool calls whose
    arguments are not objects, odd roles in odd orders, text the tokenizer may not expect."""
    fmt = data.draw(st.sampled_from(["chat", "dpo", "sharegpt", "trl_preference", "kto", "rft"]))
    rows = data.draw(st.lists(broken(ROWS[fmt]), max_size=4))
    path = write(scratch, "tokens.jsonl", data.draw(mutated(jsonl(rows))))
    CASES["with tokenizer"] += 1
    try:
        report = check(path, tokenizer, max_length=64)
    except TunesmithError:
        return
    assert_located(report.issues, path)


def test_every_format_is_fuzzed():
    assert set(ROWS) == set(FORMATS) - {"columns"}  # columns: the tables with a mapping
