"""Reading a data file in any supported format into canonical records, every problem located."""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from tunesmith.data.issues import Issue, RowIssues
from tunesmith.data.openai_format import chat_record, dpo_record
from tunesmith.data.other_formats import (
    LITERAL,
    MAPPING_ROLES,
    alpaca_record,
    columns_record,
    prompt_completion_record,
    renamed_record,
    sharegpt_record,
    text_record,
)
from tunesmith.data.preference_formats import (
    PREFERENCE_ROLES,
    is_label,
    kto_record,
    preference_columns_record,
    trl_preference_record,
)
from tunesmith.data.records import Record
from tunesmith.data.rft_format import ends_with_user, rft_record
from tunesmith.data.rows import CONTAINERS, Rows, load_rows
from tunesmith.errors import TunesmithError

# name -> (what to call it, what an example looks like)
FORMATS: dict[str, tuple[str, str]] = {
    "chat": ("OpenAI chat", '{"messages": [{"role": ..., "content": ...}], "tools"?: [...]}'),
    "dpo": (
        "OpenAI DPO",
        '{"input": {"messages": [...]}, "preferred_output": [...], "non_preferred_output": [...]}',
    ),
    "alpaca": ("Alpaca", '{"instruction": ..., "input"?: ..., "output": ...}'),
    "sharegpt": ("ShareGPT", '{"conversations": [{"from": "human"|"gpt", "value": ...}]}'),
    "prompt_completion": ("prompt/completion", '{"prompt": ..., "completion": ...}'),
    "trl_preference": (
        "TRL preference",
        '{"prompt"?: ..., "chosen": ..., "rejected": ...} (text or messages)',
    ),
    "kto": ("TRL unpaired preference (KTO)", '{"prompt": ..., "completion": ..., "label": true}'),
    "rft": (
        "OpenAI reinforcement fine-tuning",
        '{"messages": [..., {"role": "user", ...}], "tools"?: [...], <fields for the grader>}',
    ),
    "text": ("plain text", '{"text": ...} (no chat template; the whole text is learned)'),
    "columns": (
        "column mapping",
        'any rows, with {"user": COLUMN, "assistant": COLUMN} or '
        '{"prompt": COLUMN, "chosen": COLUMN, "rejected": COLUMN}, or a whole field renamed: '
        '{"messages": COLUMN}, {"text": COLUMN}, {"chosen": COLUMN, "rejected": COLUMN}',
    ),
}
# What a file's records are: the methods that train on them are checked against this.
RecordKind = Literal["chat", "pairs", "kto", "rft", "text"]
FORMAT_KINDS: dict[str, RecordKind] = {
    "chat": "chat",
    "dpo": "pairs",
    "alpaca": "chat",
    "sharegpt": "chat",
    "prompt_completion": "chat",
    "trl_preference": "pairs",
    "kto": "kto",
    "rft": "rft",
    "text": "text",
    "columns": "chat",  # or "pairs", by the mapping's roles
}
Converter = Callable[[Any, RowIssues], Record | None]
CONVERTERS: dict[str, Converter] = {
    "chat": chat_record,
    "dpo": dpo_record,
    "alpaca": alpaca_record,
    "sharegpt": sharegpt_record,
    "prompt_completion": prompt_completion_record,
    "trl_preference": trl_preference_record,
    "kto": kto_record,
    "rft": rft_record,
    "text": text_record,
}
# Mappings that rename one format's own fields (each cell holding a whole conversation, a whole
# text, or whole chosen and rejected conversations, whose shared start is the prompt, as TRL
# reads them): the set of roles -> the format whose reader then reads the renamed row.
RENAMES: dict[frozenset[str], str] = {
    frozenset({"messages"}): "chat",
    frozenset({"text"}): "text",
    frozenset({"chosen", "rejected"}): "trl_preference",
}
# Detection votes over the first rows, so that one malformed first line cannot mislead it.
DETECT_ROWS = 20


@dataclass
class ReadResult:
    """What a file held: its records, the format detected, and every problem found on the way.

    `n_examples` counts the examples in the file, those with errors included; `records` holds
    only the ones free of errors. `kind` says what the records are (chat, pairs, kto, rft).
    """

    file: str
    format: str
    container: str
    records: list[Record]
    problems: list[Issue] = field(default_factory=list)
    n_examples: int = 0
    kind: RecordKind = "chat"

    @property
    def description(self) -> str:
        """`ShareGPT (JSON array)`: what the user is told was detected."""
        return f"{FORMATS[self.format][0]} ({CONTAINERS[self.container]})"

    @property
    def errors(self) -> list[Issue]:
        return [p for p in self.problems if p.severity == "error"]


def read(
    path: str | Path, *, mapping: dict[str, str] | None = None, fmt: str = "auto"
) -> ReadResult:
    """Read JSONL, a JSON array, CSV/TSV, Parquet or a saved Hugging Face dataset.

    `fmt` is "auto" or a key of FORMATS. A `mapping` ({"system"?, "user", "assistant"} to column
    names, or to literal text after "=") reads any rows as chat; {"system"?, "prompt", "chosen",
    "rejected"} reads them as preference pairs; {"messages"}, {"text"} or {"chosen", "rejected"}
    alone rename a column to that field (cells holding conversations as JSON or Python-repr text
    are decoded). RFT files look like chat files: name them with
    fmt="rft" (auto detection takes a file for RFT only when every example read for detection
    ends with a user message). Per-example problems are collected
    in `problems`, never raised; TunesmithError is raised only when the file as a whole cannot be
    read: missing, a plain folder, not UTF-8, empty, of an unknown format, or a mapping that names
    columns the file does not have.
    """
    path = Path(path)
    rows = load_rows(path)
    n_bad_json = sum(p.kind == "invalid_json" for p in rows.problems)
    if not rows.items and not n_bad_json:
        raise TunesmithError(
            f"{path} holds no examples.",
            "Give at least one example (OpenAI requires 10 to train).",
            param="file",
        )
    fmt = choose_format(rows, path, mapping, fmt)
    kind = FORMAT_KINDS[fmt]
    if fmt != "columns":
        convert = CONVERTERS[fmt]
    elif mapping is not None and frozenset(mapping) in RENAMES:
        renamed = RENAMES[frozenset(mapping)]
        convert = partial(renamed_record, mapping=mapping, convert=CONVERTERS[renamed])
        kind = FORMAT_KINDS[renamed]
    elif mapping is not None and is_preference_mapping(mapping):
        convert, kind = partial(preference_columns_record, mapping=mapping), "pairs"
    else:
        convert = partial(columns_record, mapping=mapping)
    problems = list(rows.problems)
    records = []
    for line, value in rows.items:
        record = convert(value, RowIssues(line, problems))
        if record is not None:
            records.append(record)
    problems.sort(key=lambda p: p.line or 0)
    for problem in problems:
        problem.file = str(path)
    return ReadResult(
        file=str(path),
        format=fmt,
        container=rows.container,
        records=records,
        problems=problems,
        n_examples=len(rows.items) + n_bad_json,
        kind=kind,
    )


def choose_format(rows: Rows, path: Path, mapping: dict[str, str] | None, fmt: str) -> str:
    if mapping is not None:
        if fmt not in ("auto", "columns"):
            raise TunesmithError(
                f"A column mapping was given together with the format {fmt!r}.",
                "Give either a mapping (any rows read as chat or pairs) or a format, not both.",
                param="mapping",
            )
        check_mapping(mapping, rows.columns or first_keys(rows), path)
        return "columns"
    if fmt == "columns":
        raise TunesmithError(
            f"Reading {path} by columns needs a column mapping.",
            'Give one such as {"user": "question", "assistant": "answer"}.',
            param="mapping",
        )
    if fmt != "auto":
        if fmt not in FORMATS:
            raise TunesmithError(
                f"Unknown data format {fmt!r}.",
                f"Known formats: auto, {', '.join(FORMATS)}.",
                param="format",
            )
        return fmt
    return detect(rows, path)


def shape_of(row: dict) -> str | None:
    """The format one row looks like, from its keys; None if it looks like none."""
    if "messages" in row:
        messages = row["messages"]
        first = messages[0] if isinstance(messages, list) and messages else None
        # Some ShareGPT files name the list "messages" but keep from/value turns.
        if isinstance(first, dict) and "from" in first:
            return "sharegpt"
        return "rft" if ends_with_user(row) else "chat"
    if "preferred_output" in row or "non_preferred_output" in row:
        return "dpo"
    if "chosen" in row or "rejected" in row:
        return "trl_preference"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "prompt" in row and "completion" in row:
        # A label that is not true/false (a class name, a score) is just another column.
        return "kto" if is_label(row.get("label")) else "prompt_completion"
    if set(row) == {"text"}:  # only then: a text column beside a label is not for language modeling
        return "text"
    return None


def detect(rows: Rows, path: Path) -> str:
    """The format most of the first rows look like; raise if they look like none."""
    dicts = [value for _, value in rows.items[:DETECT_ROWS] if isinstance(value, dict)]
    if not dicts:
        return "chat"  # nothing but non-objects: the chat reader reports each one as data_type
    votes = Counter(shape_of(d) for d in dicts)
    votes.pop(None, None)
    if "chat" in votes and "rft" in votes:
        # A chat file with some answers missing is a chat file with errors, not an RFT file: a
        # file is taken for RFT only when all its examples end with the user's message.
        votes["chat"] += votes.pop("rft")
    if votes:
        return votes.most_common(1)[0][0]
    raise unknown_format(path, rows.columns or first_keys(rows))


def unknown_format(path: Path, keys: list[str]) -> TunesmithError:
    named = [k for k in keys if k]
    example = {"user": named[0], "assistant": named[-1]} if named else {"user": "COLUMN"}
    mapping_hint = (
        f'read the rows with a column mapping such as {json.dumps(example)} ("{LITERAL}" '
        f'starts literal text, where {{COLUMN}} is filled in: "system": "{LITERAL}You are ...").'
    )
    if path.suffix.lower() in (".csv", ".tsv", ".parquet"):
        return TunesmithError(
            f"{path} has the columns {', '.join(map(repr, keys[:20]))}; which one is the "
            "question and which the answer cannot be guessed.",
            f"Columns named prompt/completion or instruction/output are read as such; otherwise "
            f"{mapping_hint}",
            param="file",
        )
    known = "; ".join(
        f"{name}: {shape}" for key, (name, shape) in FORMATS.items() if key != "columns"
    )
    return TunesmithError(
        f"Could not tell the format of {path}: its examples have the keys "
        f"{', '.join(map(repr, keys[:20]))}, which match no known format.",
        f"Known formats are {known}. Rename the keys, or {mapping_hint}",
        param="file",
    )


def first_keys(rows: Rows) -> list[str]:
    """The keys of the first rows, in order of appearance: the 'columns' of JSON rows."""
    keys: dict[str, None] = {}
    for _, value in rows.items[:DETECT_ROWS]:
        if isinstance(value, dict):
            keys.update(dict.fromkeys(value))
    return list(keys)


def is_preference_mapping(mapping: dict[str, str]) -> bool:
    return bool(set(mapping) & {"prompt", "chosen", "rejected"})


def check_mapping(mapping: dict[str, str], columns: list[str], path: Path) -> None:
    """Refuse a mapping that misses a role, mixes chat and preference roles, or names a column
    the file does not have."""
    roles = set(mapping)
    if frozenset(roles) in RENAMES:
        check_columns(mapping, columns, path)
        return
    chat_roles, pair_roles = set(MAPPING_ROLES), set(PREFERENCE_ROLES)
    if roles & (chat_roles - pair_roles) and roles & (pair_roles - chat_roles):
        raise TunesmithError(
            f"The column mapping mixes chat roles ({', '.join(sorted(roles & chat_roles))}) with "
            f"preference roles ({', '.join(sorted(roles & (pair_roles - chat_roles)))}).",
            'Map {"user", "assistant"} to read chat examples, or {"prompt", "chosen", '
            '"rejected"} to read preference pairs (each may add "system").',
            param="mapping",
        )
    pairs = is_preference_mapping(mapping)
    allowed, required = (
        (PREFERENCE_ROLES, {"prompt", "chosen", "rejected"})
        if pairs
        else (MAPPING_ROLES, {"user", "assistant"})
    )
    if not roles <= set(allowed) or not required <= roles:
        stray = sorted(roles - set(allowed))
        known = sorted(chat_roles | pair_roles)
        close = [difflib.get_close_matches(r, known, n=1) for r in stray]
        guess = "".join(
            f" Did you mean {c[0]!r} for {r!r}?" for r, c in zip(stray, close, strict=True) if c
        )
        wanted = "'prompt', 'chosen' and 'rejected'" if pairs else "'user' and 'assistant'"
        raise TunesmithError(
            f"The column mapping must map {wanted} (and may map 'system'); "
            f"it maps {', '.join(map(repr, sorted(roles))) or 'nothing'}.{guess}",
            'Example: {"system": "=You are a helpful assistant.", "user": "question", '
            '"assistant": "answer"}, or for preference pairs {"prompt": "question", '
            '"chosen": "good", "rejected": "bad"}.',
            param="mapping",
        )
    check_columns(mapping, columns, path)


def check_columns(mapping: dict[str, str], columns: list[str], path: Path) -> None:
    """Refuse a mapping entry that names no column, or a column the file does not have."""
    for role, source in mapping.items():
        if not isinstance(source, str) or not source:
            raise TunesmithError(
                f"The column mapping gives {role!r} no column name.",
                "Map each role to a column name, or to literal text after '='.",
                param="mapping",
            )
        if source.startswith(LITERAL) or source in columns:
            continue
        close = difflib.get_close_matches(source, columns, n=1)
        guess = f"Did you mean {close[0]!r}? " if close else ""
        raise TunesmithError(
            f"{path} has no column {source!r} (mapped to {role}).",
            f"{guess}Its columns are: {', '.join(map(repr, columns))}.",
            param="mapping",
        )


def parse_mapping(spec: str | Iterable[str]) -> dict[str, str]:
    """A column mapping from JSON text, or from ROLE=COLUMN items (`system==You are ...`)."""
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            value = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise TunesmithError(
                f"The column mapping is not valid JSON: {exc.msg} at column {exc.colno}.",
                'Write it as {"user": "question", "assistant": "answer"}.',
                param="mapping",
            ) from exc
        if not isinstance(value, dict):
            raise TunesmithError("The column mapping must be a JSON object.", param="mapping")
        return value
    out: dict[str, str] = {}
    for item in [spec] if isinstance(spec, str) else spec:
        role, sep, source = item.partition("=")
        if not sep or not role.strip():
            raise TunesmithError(
                f"Cannot read the mapping item {item!r}.",
                "Write ROLE=COLUMN, such as user=question; give a literal system prompt as "
                "system==You are ....",
                param="mapping",
            )
        out[role.strip()] = source
    return out
