"""A comparison run as a queued job in a worker: progress as events, the report in its folder,
and a stop (a cancel through the API, the worker shutting down) obeyed at the next answer, even
while `train_now` is training."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from tunesmith.store import Store
    from tunesmith.store.lifecycle import Runner
    from tunesmith.store.tasks import TaskRow
    from tunesmith.train.config import SFTConfig

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The comparison was cancelled, or its worker is stopping."""


def _train_now(store: Store, runner: Runner, stop: Callable[[], str | None]):
    """--train-now and the curve's subsets inside a worker: regular fine-tuning jobs, claimed and
    trained right here."""

    def train(cfg: SFTConfig) -> str:
        from tunesmith.jobs.service import run_claimed, submit_here
        from tunesmith.models import threads

        job = submit_here(store, cfg, runner).job
        job = threads.call(lambda: run_claimed(store, job.id, runner, stop_requested=stop))
        if job.status != "succeeded":
            raise Stopped(f"the fine-tuning job {job.id} was {job.status}")
        assert job.fine_tuned_model is not None
        return job.fine_tuned_model

    return train


def run_queued_comparison(
    store: Store, row: TaskRow, runner: Runner, worker_stopping: Callable[[], bool]
) -> None:
    """Run a comparison this worker has claimed, to succeeded, failed or a stop, then give the
    lease back."""
    from tunesmith.evals.compare import CompareConfig, run_comparison
    from tunesmith.evals.report import write_report
    from tunesmith.infer.engine import Engine

    cmp = store.comparisons
    last_tenth: dict[str, int] = {}

    def stop() -> str | None:
        """Why to stop now: a cancel beats a shutdown (a cancelled comparison stays cancelled)."""
        if cmp.lifecycle.status(row.id) == "cancelled":
            return "cancel"
        return "cancel" if worker_stopping() else None  # its train job is not worth requeueing

    def progress(stage: str, done: int, total: int) -> None:
        if stop():
            raise Stopped("stop requested")
        tenth = done * 10 // max(total, 1)
        if last_tenth.get(stage) != tenth:  # an event per tenth, not per answer
            last_tenth[stage] = tenth
            cmp.event(
                row.id,
                f"{stage}: {done}/{total}",
                data={"stage": stage, "done": done, "total": total},
            )

    # The fine-tuned model is served merged, as it would be deployed (see Engine).
    engine = Engine(max_batch=16, merge_adapters=True)
    try:
        config = CompareConfig.model_validate(row.config)
        cmp.event(row.id, "Comparison started")
        result = run_comparison(
            config, store, engine, progress, train_now=_train_now(store, runner, stop)
        )
        paths = write_report(result, Path(row.out_dir))
        data = result.to_dict()
        data["report_files"] = {k: str(p) for k, p in paths.items()}
        cmp.event(row.id, f"Comparison finished: {data['recommendation']['headline']}")
        cmp.finish(row.id, "succeeded", result=data)
    except Stopped as why:
        _stopped(store, row, worker_stopping(), str(why))
    except Exception as exc:
        message = str(exc) if isinstance(exc, TunesmithError) else f"internal error: {exc}"
        if not isinstance(exc, TunesmithError):
            log.error("comparison %s failed:\n%s", row.id, traceback.format_exc())
        if cmp.lifecycle.move(
            row.id, "failed", only_from={"running"},
            error={"code": getattr(exc, "code", None), "message": message},
        ):  # fmt: skip
            cmp.event(row.id, f"Comparison failed: {message}", level="error")
    finally:
        engine.close()
        cmp.release(row.id, runner)


def _stopped(store: Store, row: TaskRow, shutting_down: bool, why: str) -> None:
    cmp = store.comparisons
    if cmp.lifecycle.status(row.id) == "cancelled":
        cmp.event(row.id, f"Comparison cancelled ({why})")
    elif shutting_down and cmp.lifecycle.move(row.id, "queued", only_from={"running"}):
        cmp.event(row.id, "The server is stopping; the comparison runs again at the next start")
    elif cmp.lifecycle.move(row.id, "cancelled", only_from={"running"}):
        cmp.event(row.id, f"Comparison stopped: {why}")
