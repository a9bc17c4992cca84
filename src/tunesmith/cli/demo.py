"""`tunesmith demo`: the whole path on the built-in model and the bundled order-extraction task."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tunesmith.cli.console import err, out


def demo_command(
    epochs: Annotated[int, typer.Option(min=1, help="Epochs of LoRA training.")] = 1,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Score only the first N test examples.")
    ] = None,
) -> None:
    """Check the bundled data, LoRA-tune the built-in model on it, and score base vs tuned."""
    from tunesmith.cli.store import store
    from tunesmith.cli.train import follow, submit
    from tunesmith.data.readers import read
    from tunesmith.tasks import ORDERS
    from tunesmith.train.config import SFTConfig

    started = time.monotonic()
    out.rule("[bold]1. The data")
    cfg = SFTConfig(
        data=ORDERS / "train.jsonl",
        validation=ORDERS / "validation.jsonl",
        suffix="orders-demo",
        epochs=epochs,
        batch_size=8,
    )
    job = submit(store(), cfg)
    out.rule("[bold]2. LoRA fine-tune of the built-in model")
    follow(job.id)
    job = store().jobs.get(job.id)
    out.rule("[bold]3. Base vs fine-tuned on 100 held-out examples")
    tests = read(ORDERS / "test.jsonl").records[:limit]
    base = store().models.resolve(cfg.model)
    tuned = store().models.resolve(job.fine_tuned_model)
    results = _score_both(base, tuned, tests)
    _table(results, len(tests))
    out.print(f"Demo wall time: {time.monotonic() - started:.0f} s")


def _score_both(base, tuned, tests):
    from tunesmith.evals.score import score
    from tunesmith.infer.engine import Engine
    from tunesmith.infer.sampling import SamplingParams

    engine = Engine(max_batch=16)
    params = SamplingParams(max_tokens=80, temperature=0)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    )
    results = []
    try:
        with bar:
            for label, spec in (("base", base), ("fine-tuned", tuned)):
                task = bar.add_task(f"scoring {label}", total=len(tests))
                results.append(
                    (
                        label,
                        score(engine, spec, tests, params, on_done=lambda t=task: bar.advance(t)),
                    )
                )
    finally:
        engine.close()
    return results


def _table(results, n: int) -> None:
    table = Table(title=f"Order extraction, {n} held-out examples, greedy", show_edge=False)
    for column in ("model", "exact match", "field accuracy", "valid JSON"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for label, s in results:
        table.add_row(
            f"{label}: {s.model}",
            f"{s.exact:.0%}",
            f"{s.field_accuracy:.0%}" if s.field_accuracy is not None else "-",
            f"{s.valid_json:.0%}" if s.valid_json is not None else "-",
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
