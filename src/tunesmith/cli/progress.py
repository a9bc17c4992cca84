"""The training progress bar, and Ctrl-C handling that stops a run cleanly at a step boundary."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tunesmith.cli.console import err
from tunesmith.signals import StopFlag
from tunesmith.train.events import Progress as StepProgress


@contextmanager
def training_bar(description: str) -> Iterator:
    """A Rich bar: step, epoch, loss, tokens/s and ETA. Yields the callback the run reports to."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epoch {task.fields[epoch]:.2f}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("acc {task.fields[acc]}"),
        TextColumn("{task.fields[tps]:.0f} tok/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
    task = bar.add_task(description, total=None, epoch=0.0, loss="-", acc="-", tps=0.0)

    def report(p: StepProgress) -> None:
        loss = f"{p.train_loss:.3f}"
        if p.valid_loss is not None:
            loss += f" (val {p.valid_loss:.3f})"
        bar.update(
            task,
            completed=p.step,
            total=p.total_steps,
            epoch=p.epoch,
            loss=loss,
            acc=f"{p.train_accuracy:.0%}",
            tps=p.tokens_per_second,
        )

    with bar:
        yield report


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """SIGINT/SIGTERM ask the run to stop after the current step (it saves a checkpoint).

    A second Ctrl-C stops at once; the job is then marked failed, never left running.
    """
    stop = StopFlag()  # not a threading.Event: see signals.py

    def handler(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        err.print(
            "[yellow]Stopping after this step and saving a checkpoint… (Ctrl-C again to abort)[/]"
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
