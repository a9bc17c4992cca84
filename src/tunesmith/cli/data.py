"""`tunesmith data check|convert|split`: read, validate and reshape training data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tunesmith.cli.console import out
from tunesmith.cli.report import render_report

app = typer.Typer(help="Check, convert and split training data.", no_args_is_help=True)

MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="For CSV/Parquet: ROLE=COLUMN (repeat, or comma-separate), e.g. "
        "--map user=question,assistant=answer; a literal system prompt: system==You are ...",
    ),
]


def _mapping(items: list[str] | None) -> dict[str, str] | None:
    from tunesmith.data.readers import parse_mapping

    if not items:
        return None
    return parse_mapping([part for item in items for part in item.split(",")])


@app.command("check")
def check_cmd(
    file: Annotated[
        Path, typer.Argument(help="Training data: JSONL, JSON, CSV, Parquet, HF dataset.")
    ],
    model: Annotated[
        str, typer.Option(help="Model whose tokenizer and template count the tokens.")
    ] = "smollm2-135m-instruct",
    validation: Annotated[
        Path | None, typer.Option(help="Validation file, checked for overlap too.")
    ] = None,
    mapping: MapOption = None,
    max_length: Annotated[
        int | None, typer.Option(help="Longest allowed example in tokens.")
    ] = 1024,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate a training file the way OpenAI does, and more; print token statistics.

    Exits 0 when the data is usable, 1 when it has errors.
    """
    from tunesmith.cli.store import store
    from tunesmith.data.checks import check
    from tunesmith.data.readers import read
    from tunesmith.models.loading import load_tokenizer

    # Read first: a missing or unreadable file is reported before any model loads.
    result = read(file, mapping=_mapping(mapping))
    valid = read(validation, mapping=_mapping(mapping)) if validation else None
    tokenizer = load_tokenizer(store().models.resolve(model))
    report = check(result, tokenizer, max_length=max_length, validation=valid)
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        render_report(report, out)
    raise typer.Exit(0 if report.ok else 1)


@app.command("convert")
def convert_cmd(
    source: Annotated[Path, typer.Argument(help="Data in any supported format.")],
    target: Annotated[Path, typer.Argument(help="Where to write canonical chat JSONL.")],
    mapping: MapOption = None,
) -> None:
    """Write any supported format as canonical chat JSONL (OpenAI's format)."""
    from tunesmith.data.split import convert

    result = convert(source, target, _mapping(mapping))
    out.print(f"Wrote {target} ({len(result.records)} examples, from {result.description}).")


@app.command("split")
def split_cmd(
    source: Annotated[Path, typer.Argument(help="Data in any supported format.")],
    validation: Annotated[float, typer.Option(help="Share of examples for validation.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the shuffle.")] = 0,
    out_dir: Annotated[
        Path | None, typer.Option(help="Folder for the two files (default: beside the input).")
    ] = None,
    mapping: MapOption = None,
) -> None:
    """Split into NAME.train.jsonl and NAME.validation.jsonl, deterministically for a seed."""
    from tunesmith.data.readers import read
    from tunesmith.data.split import split, write_jsonl

    result = read(source, mapping=_mapping(mapping))
    if result.errors:
        from tunesmith.data.checks import check

        check(result).raise_for_errors()
    train, valid = split(result.records, validation=validation, seed=seed)
    folder = out_dir or source.parent
    stem = Path(source.name).stem
    train_path = write_jsonl(train, folder / f"{stem}.train.jsonl")
    valid_path = write_jsonl(valid, folder / f"{stem}.validation.jsonl")
    out.print(f"Wrote {train_path} ({len(train)}) and {valid_path} ({len(valid)}).")
