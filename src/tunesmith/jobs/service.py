"""Creating a fine-tuning job and validating its files: the same steps for the CLI and the API."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.data.checks import Report, check, summarize
from tunesmith.errors import TunesmithError
from tunesmith.models.naming import clean_suffix
from tunesmith.train import events as ev
from tunesmith.train.config import SFTConfig

if TYPE_CHECKING:
    from tunesmith.store import Store
    from tunesmith.store.jobs import JobRow

TRAINABLE_PURPOSES = {"fine-tune"}


def _training_file(store: Store, file_id: str, param: str) -> Path:
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
    return Path(row.path)


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
    method = method or {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {
                "n_epochs": config.epochs,
                "batch_size": config.batch_size,
                "learning_rate_multiplier": "auto",
            }
        },
    }
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


def validate_files(store: Store, job: JobRow, report: Report | None = None) -> JobRow:
    """Check the job's files with its model's tokenizer: queue the job, or fail it with the
    first problems named (file, line, field)."""
    from tunesmith.models.loading import load_tokenizer

    config = SFTConfig.model_validate(job.config)
    if report is None:
        tokenizer = load_tokenizer(store.models.resolve(config.model))
        report = check(
            _training_file(store, job.training_file, "training_file"),
            tokenizer,
            max_length=config.max_length,
            validation=(
                _training_file(store, job.validation_file, "validation_file")
                if job.validation_file
                else None
            ),
            method="supervised",
            n_epochs=config.epochs,
        )
    if not report.ok:
        first = report.errors[0]
        param = (
            "validation_file" if report.file_label(first) == "validation file" else "training_file"
        )
        error = {
            "code": "invalid_training_file"
            if param == "training_file"
            else "invalid_validation_file",
            "message": f"The {report.file_label(first)} has {len(report.errors)} error(s): "
            + summarize(report),
            "param": param,
        }
        job = store.jobs.transition(
            job.id, "failed", allowed_from={"validating_files"}, error=error
        )
        store.events.add(job.id, ev.FAILED.format(reason=error["message"]), level="error")
        return job
    job = store.jobs.transition(job.id, "queued", allowed_from={"validating_files"})
    store.events.add(job.id, ev.VALIDATED)
    return job
