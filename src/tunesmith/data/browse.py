"""What the data page shows of a file: its raw lines, its check with a histogram of lengths, and
one example as the very tokens training reads, those that carry the loss marked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.data.checks import MIN_TRAINING_EXAMPLES, Report, check
from tunesmith.data.method_checks import Method
from tunesmith.data.preference import sequences
from tunesmith.data.readers import RecordKind, read
from tunesmith.data.render import token_pieces
from tunesmith.data.rows import load_rows, parquet_rows, read_text
from tunesmith.data.stats import Histogram, count_tokens, length_histogram
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass
class Inspection:
    """A file's check. Without a mapping, a file that cannot be read as a whole (a table whose
    question and answer columns cannot be guessed, an empty file) is not a failed request: the
    reason is in `problem` and `report` is None. `columns` is a table's header, for a mapping."""

    report: Report | None
    columns: list[str] | None
    histogram: Histogram | None = None
    problem: TunesmithError | None = None


def table_columns(path: Path) -> list[str] | None:
    """The header of a CSV, TSV or Parquet file; None for JSON files, which need no mapping."""
    return load_rows(path).columns if path.suffix.lower() in TABLE_SUFFIXES else None


def inspect(
    path: Path,
    tokenizer: PreTrainedTokenizerBase,
    *,
    mapping: dict[str, str] | None = None,
    validation: Path | None = None,
    max_length: int | None = None,
    method: Method | None = None,
    held_out: bool = False,
) -> Inspection:
    """Check a file with the model's tokenizer, as `tunesmith data check` does, and bin the
    examples' lengths. A mapping that does not fit the file raises (the request is wrong).
    `held_out` data (validation or test) has no minimum size; a training file has OpenAI's."""
    try:
        columns = table_columns(path)
        result = read(path, mapping=mapping)
    except TunesmithError as exc:
        if mapping is not None:
            raise
        return Inspection(report=None, columns=_columns_or_none(path), problem=exc)
    valid = read(validation, mapping=mapping) if validation is not None else None
    report = check(
        result,
        tokenizer,
        max_length=max_length,
        validation=valid,
        method=method,
        min_examples=0 if held_out else MIN_TRAINING_EXAMPLES,
    )
    histogram = length_histogram(count_tokens(tokenizer, result.records))
    return Inspection(report=report, columns=columns, histogram=histogram)


def _columns_or_none(path: Path) -> list[str] | None:
    try:
        return table_columns(path)
    except TunesmithError:  # not even the header can be read: nothing to map
        return None


def file_lines(path: Path, start: int = 1, count: int = 1) -> tuple[list[tuple[int, str]], int]:
    """Lines `start`.. (1-based) of a file as stored, and how many it has: the numbers a check
    report gives. A Parquet file's "lines" are its rows, each shown as JSON."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        rows = parquet_rows(path).items
        lines = [json.dumps(value, ensure_ascii=False, default=str) for _, value in rows]
    else:
        # Split on "\n" only, as the JSONL reader numbers lines (U+2028 may sit inside a string).
        lines = [line.removesuffix("\r") for line in read_text(path).split("\n")]
        if lines and not lines[-1]:
            lines.pop()  # the final newline ends the last line; it starts no new one
    chosen = lines[start - 1 : start - 1 + count]
    return [(start + i, text) for i, text in enumerate(chosen)], len(lines)


@dataclass
class Sequence:
    """One token sequence of an example, as (text, carries the loss) pieces."""

    name: str  # example (SFT), chosen / rejected (a pair), answer (KTO), prompt (RFT)
    tokens: list[tuple[str, bool]]

    @property
    def n_loss_tokens(self) -> int:
        return sum(loss for _, loss in self.tokens)


@dataclass
class Rendered:
    """Example `index` of a file's valid examples, rendered with the model's chat template."""

    index: int
    n_examples: int
    kind: RecordKind
    line: int | None
    sequences: list[Sequence] = field(default_factory=list)


def render_example(
    path: Path,
    tokenizer: PreTrainedTokenizerBase,
    index: int,
    *,
    mapping: dict[str, str] | None = None,
    max_length: int | None = None,
) -> Rendered:
    """The tokens training reads for one example (`render.encode` and its kin, truncated at
    `max_length` as training truncates), with the ones that carry the loss marked."""
    result = read(path, mapping=mapping)
    n = len(result.records)
    if not 0 <= index < n:
        raise TunesmithError(
            f"There is no example {index}: the file has {n} valid example(s)"
            + (f", numbered 0 to {n - 1}." if n else "."),
            "Pick an index within that range." if n else "Fix the file's errors first.",
            param="index",
        )
    record = result.records[index]
    return Rendered(
        index=index,
        n_examples=n,
        kind=result.kind,
        line=record.line,
        sequences=[
            Sequence(name, token_pieces(tokenizer, encoded))
            for name, encoded in sequences(tokenizer, record, max_length)
        ],
    )
