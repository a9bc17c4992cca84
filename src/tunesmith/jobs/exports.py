"""An export run as a background task in a worker: progress as events, the files in its folder,
a cancel obeyed at the next stage."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.errors import NotFoundError, TunesmithError

if TYPE_CHECKING:
    from tunesmith.models.spec import ModelSpec
    from tunesmith.store import Store
    from tunesmith.store.lifecycle import Runner
    from tunesmith.store.tasks import TaskRow

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The export was cancelled, or its worker is stopping."""


def training_data(store: Store, spec: ModelSpec) -> Path | None:
    """The fine-tuned model's training file, whose prompts the check asks and whose shared
    system prompt the Modelfile keeps; None for a base model or a file deleted since."""
    job_id = spec.extra.get("job_id") if spec.extra else None
    if not job_id:
        return None
    try:
        path = Path(store.files.get(store.jobs.get(job_id).training_file).path)
    except NotFoundError:
        return None
    return path if path.exists() else None


def run_queued_export(
    store: Store, row: TaskRow, runner: Runner, worker_stopping: Callable[[], bool]
) -> None:
    """Run an export this worker has claimed, to succeeded, failed or a stop, then give the lease
    back. Whatever stops it, export() leaves nothing half-written in its folder."""
    from tunesmith.export.run import NotVerifiedError, export

    tasks = store.exports
    seen: set[str] = set()

    def progress(stage: str, done: int, total: int) -> None:
        if tasks.lifecycle.status(row.id) == "cancelled" or worker_stopping():
            raise Stopped(stage)
        if stage not in seen:  # an event per stage, not per tensor
            seen.add(stage)
            tasks.event(row.id, f"{stage}", data={"stage": stage, "done": done, "total": total})

    config = row.config
    try:
        tasks.event(row.id, f"Export of {config['model']} as {config['format']} started")
        spec = store.models.resolve(config["model"])
        result = export(
            spec,
            config["format"],
            Path(row.out_dir),
            quant=config.get("quant"),
            force=True,  # the folder is this task's own; a retried run replaces its leftovers
            check=config.get("check", True),
            data=training_data(store, spec),
            progress=progress,
        )
        tasks.event(row.id, f"Export finished: {Path(row.out_dir)}")
        tasks.finish(row.id, "succeeded", result=describe(result))
    except Stopped:
        if tasks.lifecycle.status(row.id) == "cancelled":
            tasks.event(row.id, "Export cancelled; nothing was kept")
        elif tasks.lifecycle.move(row.id, "queued", only_from={"running"}):
            tasks.event(row.id, "The server is stopping; the export runs again at the next start")
    except NotVerifiedError as exc:  # written, but it answers differently: failed, files kept
        _fail(store, row.id, exc, describe(exc.result))
    except Exception as exc:
        if not isinstance(exc, TunesmithError):
            log.exception("export %s failed", row.id)
        _fail(store, row.id, exc, None)
    finally:
        store.exports.release(row.id, runner)


def describe(result) -> dict:
    """The result as the API shows it: where the files are, and how well they answered."""
    check = result.check
    return {
        "format": result.format,
        "quant": result.quant,
        "path": str(result.path),
        "files": result.files,
        "write_seconds": round(result.write_seconds, 2),
        "check": None
        if check is None
        else {
            "agreements": check.agreements,
            "mean": check.mean,
            "threshold": check.threshold,
            "passed": check.passed,
        },
    }


def _fail(store: Store, export_id: str, exc: Exception, result: dict | None) -> None:
    message = str(exc) if isinstance(exc, TunesmithError) else f"internal error: {exc}"
    error = {"code": getattr(exc, "code", None), "message": message}
    if store.exports.lifecycle.move(
        export_id, "failed", only_from={"running"}, error=error, result=result
    ):
        store.exports.event(export_id, f"Export failed: {message}", level="error")
