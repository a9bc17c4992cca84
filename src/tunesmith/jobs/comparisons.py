"""Running a queued comparison in a worker: progress as events, the report in its folder."""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from tunesmith.store import Store
    from tunesmith.store.comparisons import ComparisonRow

log = logging.getLogger(__name__)


def _train_now(store: Store):
    """--train-now inside a worker: a regular fine-tuning job, trained right here."""

    def train(config) -> str:
        from tunesmith.jobs.service import create_job, validate_files
        from tunesmith.models import threads
        from tunesmith.train.config import SFTConfig
        from tunesmith.train.run import run

        train_file = store.files.add_path(config.train, "fine-tune", config.train.name)
        job = create_job(
            store, SFTConfig(model=config.model), training_file=train_file.id, seed=config.seed
        )
        job = validate_files(store, job)
        if job.status != "queued":
            raise TunesmithError(
                f"Training data refused: {job.error['message']}", param="train_file"
            )
        store.jobs.transition(job.id, "running", allowed_from={"queued"}, worker_pid=os.getpid())
        return threads.call(lambda: run(job.id, store)).fine_tuned_model

    return train


def run_queued_comparison(store: Store, row: ComparisonRow) -> None:
    from tunesmith.evals.compare import CompareConfig, run_comparison
    from tunesmith.evals.report import write_report
    from tunesmith.infer.engine import Engine

    cmp = store.comparisons
    last_tenth: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
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
        result = run_comparison(config, store, engine, progress, train_now=_train_now(store))
        paths = write_report(result, Path(row.out_dir))
        data = result.to_dict()
        data["report_files"] = {k: str(p) for k, p in paths.items()}
        cmp.event(row.id, f"Comparison finished: {data['recommendation']['headline']}")
        cmp.finish(row.id, "succeeded", result=data)
    except Exception as exc:
        message = str(exc) if isinstance(exc, TunesmithError) else f"internal error: {exc}"
        if not isinstance(exc, TunesmithError):
            log.error("comparison %s failed:\n%s", row.id, traceback.format_exc())
        cmp.event(row.id, f"Comparison failed: {message}", level="error")
        cmp.finish(row.id, "failed", error={"code": getattr(exc, "code", None), "message": message})
    finally:
        engine.close()
