"""Training data inspection (a tunesmith extension over uploaded files): the data page's check,
raw lines, "what the model is trained on", and convert/split into new stored files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tunesmith.api.deps import StoreDep
from tunesmith.api.protocol.data import (
    CheckRequest,
    CheckResult,
    ConvertRequest,
    LinesPage,
    RenderRequest,
    RenderResult,
    SplitRequest,
    SplitResult,
    StoredData,
)
from tunesmith.data import browse
from tunesmith.data.records import Record
from tunesmith.data.split import jsonl_lines, read_clean, split
from tunesmith.errors import NotFoundError, TunesmithError
from tunesmith.store import Store
from tunesmith.store.files import FileRow

router = APIRouter(tags=["data"])


def _rename(value: Any, rows: tuple[FileRow, ...]) -> Any:
    """`value` with each stored file's path replaced by the name it was uploaded under: messages
    name the file as the user knows it, never where the server keeps it."""
    if isinstance(value, str):
        for row in rows:
            value = value.replace(row.path, row.filename)
        return value
    if isinstance(value, dict):
        return {key: _rename(item, rows) for key, item in value.items()}
    if isinstance(value, list):
        return [_rename(item, rows) for item in value]
    return value


@contextmanager
def _named(*rows: FileRow) -> Iterator[None]:
    try:
        yield
    except TunesmithError as exc:
        exc.message, exc.hint = _rename(exc.message, rows), _rename(exc.hint, rows)
        raise


def _tokenizer(store: Store, model: str):
    from tunesmith.models.loading import load_tokenizer  # cached per model folder

    return load_tokenizer(store.models.resolve(model))


@router.post("/files/{file_id}/check", response_model=CheckResult)
def check_file(file_id: str, body: CheckRequest, store: StoreDep) -> dict:
    """Check a stored file as `tunesmith data check` does, with the model's tokenizer. Errors in
    the data are a 200 whose report lists them; a mapping that does not fit the file is a 400."""
    rows = (store.files.get(file_id),)  # 404 for an unknown id
    if body.validation_file:
        try:
            rows += (store.files.get(body.validation_file),)
        except NotFoundError as exc:
            exc.param = "validation_file"  # the path's file exists; this one does not
            raise
    tokenizer = _tokenizer(store, body.model)
    with _named(*rows):
        found = browse.inspect(
            Path(rows[0].path),
            tokenizer,
            mapping=body.mapping,
            validation=Path(rows[1].path) if len(rows) > 1 else None,
            max_length=body.max_length,
            method=body.method,
            held_out=body.held_out,
        )
    problem = found.problem
    answer = {
        "report": found.report.to_dict() if found.report else None,
        "columns": found.columns,
        "histogram": found.histogram.to_dict() if found.histogram else None,
        "problem": (
            {"message": problem.message, "hint": problem.hint, "param": problem.param}
            if problem
            else None
        ),
    }
    return _rename(answer, rows)


@router.get("/files/{file_id}/lines", response_model=LinesPage)
def file_lines(
    file_id: str,
    store: StoreDep,
    start: Annotated[int, Query(ge=1, description="The first line, from 1.")] = 1,
    count: Annotated[int, Query(ge=1, le=1000)] = 1,
) -> dict:
    """Lines of a stored file as they are on disk (a Parquet row as JSON): the line an error names."""
    row = store.files.get(file_id)
    with _named(row):
        lines, total = browse.file_lines(Path(row.path), start, count)
    return {"data": [{"line": n, "text": t} for n, t in lines], "total_lines": total}


@router.post("/files/{file_id}/render", response_model=RenderResult)
def render_example(file_id: str, body: RenderRequest, store: StoreDep) -> dict:
    """One valid example rendered with the model's chat template, token by token, the tokens that
    carry the loss marked: exactly what training reads."""
    row = store.files.get(file_id)
    tokenizer = _tokenizer(store, body.model)
    with _named(row):
        rendered = browse.render_example(
            Path(row.path), tokenizer, body.index, mapping=body.mapping, max_length=body.max_length
        )
    return {
        "index": rendered.index,
        "n_examples": rendered.n_examples,
        "kind": rendered.kind,
        "line": rendered.line,
        "sequences": [
            {
                "name": s.name,
                "tokens": [{"text": text, "loss": loss} for text, loss in s.tokens],
                "n_loss_tokens": s.n_loss_tokens,
            }
            for s in rendered.sequences
        ],
    }


def _save(store: Store, records: list[Record], filename: str) -> dict:
    """Records as a new stored chat JSONL file, written under a hidden name and moved into place
    (as an upload is), so no half-written file is ever listed."""
    with store.files.begin(filename) as pending:
        for line in jsonl_lines(records):
            pending.write(line.encode("utf-8"))
        row = pending.commit("fine-tune")
    return {**row.to_openai(), "n_examples": len(records)}


def _read_clean(row: FileRow, mapping: dict[str, str] | None) -> list[Record]:
    with _named(row):
        return read_clean(Path(row.path), mapping).records


@router.post("/files/{file_id}/convert", response_model=StoredData)
def convert_file(file_id: str, body: ConvertRequest, store: StoreDep) -> dict:
    """Save the file (read with the mapping) as canonical chat JSONL, a new file, like `tunesmith
    data convert`: a file with errors is refused, never silently shortened."""
    row = store.files.get(file_id)
    records = _read_clean(row, body.mapping)
    return _save(store, records, f"{Path(row.filename).stem}.jsonl")


@router.post("/files/{file_id}/split", response_model=SplitResult)
def split_file(file_id: str, body: SplitRequest, store: StoreDep) -> dict:
    """Split into two new files, training and validation, like `tunesmith data split`."""
    row = store.files.get(file_id)
    train, valid = split(_read_clean(row, body.mapping), validation=body.validation, seed=body.seed)
    stem = Path(row.filename).stem
    return {
        "training_file": _save(store, train, f"{stem}.train.jsonl"),
        "validation_file": _save(store, valid, f"{stem}.validation.jsonl"),
    }
