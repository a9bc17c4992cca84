"""Train/validation split, writing canonical chat JSONL atomically, and converting a file to it."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from tunesmith.atomic import atomic_file
from tunesmith.data.checks import check, record_key
from tunesmith.data.readers import ReadResult, read
from tunesmith.data.records import Record
from tunesmith.errors import TunesmithError


def split(
    records: list[Record], validation: float = 0.1, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """Split into (train, validation), the same for the same seed; both keep the file's order.

    Exact copies always land on the same side: split apart, they would make the validation set
    overlap the training set.
    """
    if not 0 < validation < 1:
        raise TunesmithError(
            f"The validation fraction must be between 0 and 1 (exclusive), not {validation}.",
            "Use for example 0.1 to hold out 10% of the examples.",
            param="validation",
        )
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record_key(record), []).append(index)
    if len(groups) < 2:
        raise TunesmithError(
            f"{len(records)} example(s), {len(groups)} distinct, cannot be split into training "
            "and validation.",
            "Give at least two distinct examples, or train without a validation set.",
            param="validation",
        )
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    target = max(1, round(len(records) * validation))
    held: list[int] = []
    # Take groups until the target is reached, always leaving one group for training.
    for group in order[:-1]:
        if len(held) >= target:
            break
        held += group
    held_set = set(held)
    train = [r for i, r in enumerate(records) if i not in held_set]
    valid = [r for i, r in enumerate(records) if i in held_set]
    return train, valid


def jsonl_lines(records: list[Record]) -> Iterator[str]:
    """Each record as one line of canonical OpenAI JSONL, newline included."""
    for record in records:
        yield json.dumps(record.to_openai(), ensure_ascii=False) + "\n"


def write_jsonl(records: list[Record], path: str | Path) -> Path:
    """Write records as canonical OpenAI JSONL, one per line, replacing `path` in one step.

    The lines go to a temporary file in the same folder, renamed over `path` at the end
    (`atomic.atomic_file`), so a crash never leaves a half-written file where a good one was.
    """
    path = Path(path)
    try:
        with atomic_file(path) as partial, partial.open("w", encoding="utf-8", newline="\n") as f:
            f.writelines(jsonl_lines(records))
    except OSError as exc:
        raise TunesmithError(
            f"Cannot write {path}: {exc.strerror or exc}.",
            "Check the folder exists and is writable, and that the disk has room.",
            param="file",
        ) from exc
    return path


def convert(
    source: str | Path,
    out: str | Path,
    mapping: dict[str, str] | None = None,
    *,
    fmt: str = "auto",
) -> ReadResult:
    """Read any supported format and write it as canonical chat JSONL.

    Refuses (DataError with the report) if the file has errors, so a converted file is never a
    silently shortened one. Few examples are not an error here: conversion is not training.
    """
    result = read_clean(source, mapping, fmt=fmt)
    write_jsonl(result.records, out)
    return result


def read_clean(
    source: str | Path, mapping: dict[str, str] | None = None, *, fmt: str = "auto"
) -> ReadResult:
    """Read a file, refusing it (DataError with the report) if any example has an error: what is
    written from it (converted, split) is then never a silently shortened copy."""
    result = read(source, mapping=mapping, fmt=fmt)
    check(result, min_examples=0).raise_for_errors()
    return result
