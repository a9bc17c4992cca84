"""Raw rows out of a file (JSONL, JSON array, CSV/TSV, Parquet, saved HF dataset), each with its line."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.data.issues import Issue, make_issue
from tunesmith.errors import NotFoundError, TunesmithError

CONTAINERS = {
    "jsonl": "JSONL",
    "json": "JSON array",
    "csv": "CSV",
    "tsv": "TSV",
    "parquet": "Parquet",
    "hf_dataset": "Hugging Face dataset",
}
HF_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")  # what save_to_disk writes
_WHITESPACE = re.compile(r"[ \t\n\r]*")


@dataclass
class Rows:
    """Raw values with their 1-based line; `columns` is the header of a table, None for JSON."""

    container: str
    items: list[tuple[int, Any]]
    columns: list[str] | None = None
    problems: list[Issue] = field(default_factory=list)


def load_rows(path: Path) -> Rows:
    """The rows of a file; the container is told by the suffix, or by the text for JSON."""
    if not path.exists():
        raise NotFoundError(
            f"{path} does not exist.", "Check the path (and the current folder).", param="file"
        )
    if path.is_dir():
        if any((path / marker).exists() for marker in HF_MARKERS):
            return hf_dataset_rows(path)
        raise TunesmithError(
            f"{path} is a folder, not a data file.",
            "Give a JSONL, JSON, CSV, TSV or Parquet file, or a folder written by a Hugging Face "
            "dataset's save_to_disk (it holds dataset_info.json).",
            param="file",
        )
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return parquet_rows(path)
    text = read_text(path)
    if suffix in (".csv", ".tsv"):
        return csv_rows(text, path, delimiter="\t" if suffix == ".tsv" else ",")
    if text.lstrip().startswith("["):
        return json_array_rows(text)
    return jsonl_rows(text)


def read_text(path: Path) -> str:
    """The file as UTF-8 text; refuse an empty file, or one in another encoding, with the byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TunesmithError(f"Cannot read {path}: {exc.strerror or exc}.", param="file") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TunesmithError(
            f"{path} is not UTF-8 text: byte {exc.start} (line {line}) is 0x{data[exc.start]:02x}.",
            "Save the file as UTF-8, for example with `iconv -f latin1 -t utf-8 IN > OUT`.",
            param="file",
        ) from exc
    text = text.removeprefix("\ufeff")  # the byte-order mark Excel and Notepad put first
    if not text.strip():  # after the mark: a file of nothing but a BOM is empty too
        raise TunesmithError(
            f"{path} is empty.", "Give a file with at least one example.", param="file"
        )
    return text


def jsonl_rows(text: str) -> Rows:
    rows = Rows("jsonl", [])
    # Split on "\n" only: str.splitlines() would also split on U+2028, which JSON strings may hold.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            rows.items.append((number, text_only(json.loads(raw))))
        except json.JSONDecodeError as exc:
            rows.problems.append(bad_json(exc, number, exc.colno))
        except (RecursionError, ValueError) as exc:
            rows.problems.append(unreadable_json(exc, number))
    return rows


def text_only(value: object) -> object:
    """`value`, if every string in it is text; a lone UTF-16 surrogate (`"\\ud800"`, valid JSON
    that no UTF-8 text can hold, as tokenizers refuse) raises ValueError."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= ch <= "\udfff" for ch in item):
                raise ValueError("a string holds a lone UTF-16 surrogate escape such as \\ud800")
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return value


def json_array_rows(text: str) -> Rows:
    """Elements of a JSON array, each with the line it starts on.

    json.loads would lose the lines, so the array is walked one element at a time. A syntax error
    stops the walk: after it, where the next element starts cannot be known.
    """
    rows = Rows("json", [])
    decoder = json.JSONDecoder()
    pos = _WHITESPACE.match(text, text.index("[") + 1).end()
    line, counted = 1, 0
    try:
        while not text.startswith("]", pos):
            line, counted = line + text.count("\n", counted, pos), pos
            value, pos = decoder.raw_decode(text, pos)
            rows.items.append((line, text_only(value)))
            pos = _WHITESPACE.match(text, pos).end()
            if text.startswith(",", pos):
                pos = _WHITESPACE.match(text, pos + 1).end()
            elif not text.startswith("]", pos):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        if text[pos + 1 :].strip():
            raise json.JSONDecodeError("Extra data after the array", text, pos + 1)
    except json.JSONDecodeError as exc:
        rows.problems.append(bad_json(exc, exc.lineno, exc.colno))
    except (RecursionError, ValueError) as exc:  # where the next element starts is lost too
        rows.problems.append(unreadable_json(exc, line))
    return rows


def bad_json(exc: json.JSONDecodeError, line: int, column: int) -> Issue:
    return make_issue(
        "invalid_json",
        f"Not valid JSON: {exc.msg} at column {column}. Each line must hold one complete JSON "
        "object; look for a missing quote, comma or brace, or a line break inside a string.",
        line=line,
    )


def unreadable_json(exc: RecursionError | ValueError, line: int) -> Issue:
    """Valid JSON past what Python reads: nesting deeper than its recursion limit (about
    1,000), or an integer longer than its 4,300-digit limit (a ValueError)."""
    what = (
        "is nested too deeply to read"
        if isinstance(exc, RecursionError)
        else f"cannot be read ({exc})"
    )
    return make_issue(
        "invalid_json",
        f"The JSON here {what}. No training example needs that; check how the file was written.",
        line=line,
    )


def csv_rows(text: str, path: Path, *, delimiter: str) -> Rows:
    """Rows as {column: cell}; a row's line is the physical line it starts on (header: line 1)."""
    container = "tsv" if delimiter == "\t" else "csv"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        rows = Rows(container, [], columns=header)
        while True:
            start = reader.line_num + 1
            cells = next(reader, None)
            if cells is None:
                break
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                rows.problems.append(
                    make_issue(
                        "data_type",
                        f"The row has {len(cells)} cells but the header has {len(header)} "
                        "columns; quote cells that contain the delimiter or line breaks.",
                        line=start,
                    )
                )
                continue
            rows.items.append((start, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        raise TunesmithError(
            f"{path} line {reader.line_num} is not valid {container.upper()}: {exc}.",
            "Check the quoting on that line.",
            param="file",
        ) from exc
    return rows


def parquet_rows(path: Path) -> Rows:
    """Rows of a Parquet table; a row's line is its 1-based row number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise TunesmithError(
            f"{path} is not a readable Parquet file: {exc}.",
            "Write it with pandas.DataFrame.to_parquet or pyarrow.parquet.write_table.",
            param="file",
        ) from exc
    return Rows("parquet", list(enumerate(table.to_pylist(), start=1)), columns=table.column_names)


def hf_dataset_rows(path: Path) -> Rows:
    """Rows of a dataset saved with save_to_disk (its train split if it has several)."""
    from datasets import DatasetDict, load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise TunesmithError(
            f"{path} is not a readable Hugging Face dataset: {exc}.", param="file"
        ) from exc
    if isinstance(dataset, DatasetDict):
        splits = list(dataset)
        if "train" not in dataset and len(splits) != 1:
            raise TunesmithError(
                f"The dataset in {path} has the splits {', '.join(splits)} and no 'train' split.",
                f"Give the folder of one split, such as {path / splits[0]}.",
                param="file",
            )
        dataset = dataset["train" if "train" in dataset else splits[0]]
    items = list(enumerate(dataset.to_list(), start=1))
    return Rows("hf_dataset", items, columns=list(dataset.column_names))
