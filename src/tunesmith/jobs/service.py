"""The one job service: every door (CLI train, demo, compare --train-now, the API, the web UI)
creates, validates, claims and runs fine-tuning jobs through these functions, never by itself.

A job's life (states.JOB_MOVES): created in `validating_files`; its files are checked; then it is
either queued for a server worker, or claimed at once by the process that will train it in the
foreground (so no worker can take it in between); it runs under that runner's lease; the lease is
given back whatever the ending.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.data.checks import Report, check, summarize
from tunesmith.errors import TunesmithError
from tunesmith.models.naming import clean_suffix
from tunesmith.store.lifecycle import Runner
from tunesmith.train import events as ev
from tunesmith.train.config import SFTConfig, base_learning_rate, parse_config

if TYPE_CHECKING:
    from tunesmith.data.readers import ReadResult
    from tunesmith.store import Store
    from tunesmith.store.files import FileRow
    from tunesmith.store.jobs import JobRow

log = logging.getLogger(__name__)
TRAINABLE_PURPOSES = {"fine-tune"}


def grader_fields(config: SFTConfig) -> list[str] | None:
    """The item fields a grpo job's grader reads, each of which every example must have; the
    grader itself is checked first (a mistake names its field)."""
    if config.method != "grpo":
        return None
    from tunesmith.graders.spec import parse_grader
    from tunesmith.graders.templates import item_fields

    if config.grader is None:
        raise TunesmithError(
            "GRPO needs a grader to score the answers.",
            "Pass --grader grader.json (OpenAI grader JSON) or --grader grader.py (a file "
            "defining grade(sample, item) -> float).",
            param="grader",
        )
    parse_grader(config.grader)
    return item_fields(config.grader)


# --- files ----------------------------------------------------------------------------------------
def _training_file(store: Store, file_id: str, param: str) -> FileRow:
    try:
        row = store.files.get(file_id)
    except TunesmithError as exc:
        raise TunesmithError(
            f"The {param.replace('_', ' ')} {file_id!r} does not exist.",
            "Upload it first (files.create with purpose 'fine-tune').",
            param=param,
            code="invalid_file",
        ) from exc
    if row.purpose not in TRAINABLE_PURPOSES:
        raise TunesmithError(
            f"File {file_id} has purpose {row.purpose!r}; fine-tuning needs 'fine-tune'.",
            "Upload the file again with purpose='fine-tune'.",
            param=param,
            code="invalid_file_purpose",
        )
    return row


def store_data_file(store: Store, result: ReadResult) -> FileRow:
    """Keep a copy of a local data file, in its own format (its suffix tells the reader how to
    read it again). A Hugging Face dataset folder is not one file: it is kept as chat JSONL."""
    from tunesmith.data.split import write_jsonl

    source = Path(result.file)
    if source.is_file():
        return store.files.add_path(source, "fine-tune", source.name)
    with tempfile.TemporaryDirectory() as tmp:
        canonical = write_jsonl(result.records, Path(tmp) / f"{source.name}.jsonl")
        return store.files.add_path(canonical, "fine-tune", canonical.name)


# --- creating and validating ----------------------------------------------------------------------
def create_job(
    store: Store,
    config: SFTConfig,
    *,
    training_file: str,
    validation_file: str | None = None,
    seed: int | None = None,
    metadata: dict | None = None,
    method: dict | None = None,
) -> JobRow:
    """A new job in `validating_files`, with OpenAI's first events. Nothing is trained yet."""
    store.models.resolve(config.model)  # unknown model: refuse now, not in the worker
    clean_suffix(config.suffix)
    _training_file(store, training_file, "training_file")
    if validation_file is not None:
        _training_file(store, validation_file, "validation_file")
    seed = seed if seed is not None else secrets.randbelow(2**31 - 1)
    config = config.model_copy(update={"seed": seed, "data": None, "validation": None})
    method = method or openai_method(config)
    job = store.jobs.create(
        model=config.model,
        training_file=training_file,
        validation_file=validation_file,
        suffix=config.suffix,
        seed=seed,
        metadata=metadata,
        method=method,
        config=config.model_dump(mode="json"),
    )
    store.events.add(job.id, ev.CREATED.format(job_id=job.id))
    if validation_file:
        message = ev.VALIDATING_BOTH.format(training=training_file, validation=validation_file)
    else:
        message = ev.VALIDATING.format(training=training_file)
    store.events.add(job.id, message)
    return job


def openai_method(config: SFTConfig, asked: dict | None = None) -> dict:
    """The job's `method` as OpenAI echoes it: the hyperparameters a request `asked` for (OpenAI's
    extras such as compute_multiplier too), the config's numbers over them, "auto" where the data
    decides (the run fills those in when training starts), and a grpo job's grader."""
    rate = config.learning_rate
    hyperparameters = {
        **(asked or {}),
        "n_epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate_multiplier": (
            "auto" if rate == "auto" else round(rate / base_learning_rate(config), 6)
        ),
    }
    if hasattr(config, "beta"):
        hyperparameters["beta"] = config.beta
    section: dict = {"hyperparameters": hyperparameters}
    if getattr(config, "grader", None) is not None:
        section["grader"] = config.grader
    return {"type": config.openai_type, config.openai_type: section}


def check_job_files(store: Store, job: JobRow) -> Report:
    """The job's files checked with its model's tokenizer, read as their own format."""
    return check_files(store, parse_config(job.config), job.training_file, job.validation_file)


def check_files(
    store: Store, config: SFTConfig, training_file: str, validation: str | None = None
) -> Report:
    """Uploaded files (by id) checked as a job of `config` would check them."""
    from tunesmith.models.loading import load_tokenizer

    tokenizer = load_tokenizer(store.models.resolve(config.model))
    return check(
        Path(_training_file(store, training_file, "training_file").path),
        tokenizer,
        max_length=config.max_length,
        validation=(
            Path(_training_file(store, validation, "validation_file").path) if validation else None
        ),
        mapping=config.mapping,
        fmt=config.data_format,
        method=config.data_kind,
        n_epochs=config.epochs,
        item_fields=grader_fields(config),
    )


def validate_files(
    store: Store, job: JobRow, report: Report | None = None, *, claim_for: Runner | None = None
) -> JobRow:
    """Check the job's files: fail the job naming the first problems (file, line, field), or
    queue it, or, with `claim_for`, claim it for that runner at once. Warnings (duplicates, an
    example shared by both files) become warning events; the job still runs, as on OpenAI."""
    report = report or check_job_files(store, job)
    if not report.ok:
        first = report.errors[0]
        param = (
            "validation_file" if report.file_label(first) == "validation file" else "training_file"
        )
        error = {
            "code": f"invalid_{param}",
            "message": f"The {report.file_label(first)} has {len(report.errors)} error(s): "
            + summarize(report),
            "param": param,
        }
        job = store.jobs.move(job.id, "failed", only_from={"validating_files"}, error=error)
        # where the first error is, so a viewer can show the line itself
        where = {
            "file_id": job.validation_file if param == "validation_file" else job.training_file,
            **first.to_dict(),
        }
        store.events.add(
            job.id, ev.FAILED.format(reason=error["message"]), level="error", data=where
        )
        return job
    for warning in report.warnings:
        store.events.add(
            job.id,
            f"Warning, {warning.where(report.file_label(warning))}: {warning.message}",
            level="warn",
            data=warning.to_dict(),
        )
    if claim_for is not None:
        store.events.add(job.id, ev.VALIDATED_CLAIMED)
        return store.jobs.claim(job.id, claim_for, only_from={"validating_files"})
    job = store.jobs.move(job.id, "queued", only_from={"validating_files"})
    store.events.add(job.id, ev.VALIDATED)
    return job


@dataclass
class Submitted:
    """A job submitted from local files: claimed by this process, with the data's report."""

    job: JobRow
    report: Report


def submit_here(store: Store, cfg: SFTConfig, runner: Runner | None = None) -> Submitted:
    """Local files → checked → stored in their format → a job claimed by `runner` (this process
    by default), ready for `run_claimed`. Bad data raises DataError with the full report, and no
    job is created."""
    from tunesmith.data.readers import read
    from tunesmith.models.loading import load_tokenizer

    if cfg.data is None:
        raise TunesmithError(
            "No training data given.",
            "Pass --data train.jsonl (or set `data:` in the --config YAML).",
            param="data",
        )
    # Each file is read once: the check and the stored copy use the same records.
    results = [
        read(path, mapping=cfg.mapping, fmt=cfg.data_format)
        for path in filter(None, (cfg.data, cfg.validation))
    ]
    report = check(
        results[0],
        load_tokenizer(store.models.resolve(cfg.model)),
        max_length=cfg.max_length,
        validation=results[1] if len(results) > 1 else None,
        n_epochs=cfg.epochs,
        method=cfg.data_kind,
        item_fields=grader_fields(cfg),
    )
    report.raise_for_errors()
    stored = [store_data_file(store, result) for result in results]
    job = create_job(
        store,
        cfg,
        training_file=stored[0].id,
        validation_file=stored[1].id if len(stored) > 1 else None,
        seed=cfg.seed,
    )
    job = validate_files(store, job, report, claim_for=runner or Runner.here())
    return Submitted(job, report)


# --- running --------------------------------------------------------------------------------------
def claim_to_resume(store: Store, job_id: str, runner: Runner | None = None) -> JobRow:
    """`tunesmith train --resume JOB`: claim a paused, cancelled or failed job to continue it
    here from its last checkpoint. A job another process still runs is refused."""
    from tunesmith.jobs.recovery import free_if_dead

    job = store.jobs.get(job_id)
    if job.status not in ("cancelled", "paused", "failed"):
        raise TunesmithError(
            f"Job {job_id} is {job.status}; only a cancelled, paused or failed job can resume.",
            param="resume",
            code="invalid_job_state",
        )
    free_if_dead(store, job)
    return store.jobs.claim(
        job_id, runner or Runner.here(), only_from={"cancelled", "paused", "failed"}
    )


def run_claimed(
    store: Store,
    job_id: str,
    runner: Runner,
    *,
    progress: ev.ProgressFn | None = None,
    stop_requested: ev.StopFn | None = None,
) -> JobRow:
    """Train a job this runner has claimed, to its end or its stop, then give the lease back.

    `stop_requested` adds the runner's own reasons to stop (Ctrl-C, a server shutting down) to
    the job's (a cancel or pause through any door, read at each step boundary). While it runs, a
    thread renews the lease; a runner that lost it (cut off from the store for longer than the
    lease, and recovered by another host) stops at the next step. A job of many processes
    (`nproc`, `nnodes`, `accelerate_config`) runs under torchrun, supervised from here as one
    job (train/distributed.py)."""
    from tunesmith.jobs.control import stop_reason
    from tunesmith.train import distributed
    from tunesmith.train.run import run

    config = parse_config(store.jobs.get(job_id).config)
    resume = store.checkpoints.latest(job_id) is not None
    try:
        with store.jobs.lifecycle.heartbeat(job_id, runner) as beating:

            def should_stop() -> str | None:
                if beating.lost:
                    return "requeue"
                return (stop_requested() if stop_requested else None) or stop_reason(store, job_id)

            if distributed.is_distributed(config):
                return distributed.supervise(
                    store, job_id, config, progress=progress, stop_requested=should_stop
                )
            return run(
                job_id, store, progress=progress, stop_requested=should_stop, resume=resume,
                runner=runner,
            )  # fmt: skip
    finally:
        store.jobs.release(job_id, runner)


def run_next(store: Store, runner: Runner, stop_requested: ev.StopFn) -> JobRow | None:
    """A worker's turn: claim the oldest queued job and train it; None when the queue is empty.
    Now and then it first hands jobs whose runner died (on any host) back to the queue."""
    _reclaim_now_and_then(store)
    job = store.jobs.claim_next(runner)
    if job is None:
        return None
    return run_claimed(store, job.id, runner, stop_requested=stop_requested)


_next_reclaim = 0.0  # this process's clock: when its workers next look for dead runners


def _reclaim_now_and_then(store: Store) -> None:
    """Crashes on another host sharing the store have no one there to notice them: every worker
    looks, at most every quarter lease, so an expired lease is back in the queue soon after."""
    global _next_reclaim
    from tunesmith.jobs.recovery import reclaim

    now = time.monotonic()
    if now < _next_reclaim:
        return
    _next_reclaim = now + store.settings.lease_seconds / 4
    try:
        reclaim(store)
    except Exception:  # a database hiccup: the next turn looks again; the worker goes on
        log.warning("looking for jobs whose runner died failed", exc_info=True)
