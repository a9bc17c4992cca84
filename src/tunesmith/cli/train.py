"""`tunesmith train`: check the data, create a job in the store, and train it in the foreground."""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path
from typing import Any

import typer

from tunesmith.cli.console import out
from tunesmith.cli.options import config_parameters, overrides_from_flags
from tunesmith.errors import TunesmithError
from tunesmith.train.config import SFTConfig

HELP = """Fine-tune a model on your data (SFT, LoRA by default), in the foreground.

The data is checked first. The job lands in the store, so `tunesmith jobs` and the API see it.
Ctrl-C stops after the current step and keeps a checkpoint; `--resume JOB` continues from it.
Settings come from defaults < --config YAML < flags.

Example: tunesmith train --data train.jsonl --validation valid.jsonl --suffix orders --epochs 2
"""


def train_command(
    config: Path | None = None, resume: str | None = None, print_config: bool = False, **flags: Any
) -> None:
    from tunesmith.cli.store import store

    overrides = overrides_from_flags(SFTConfig, flags)
    if print_config:  # the merged settings as YAML: a starting point for --config
        from tunesmith.train.config import dump_yaml, load_config

        out.print(dump_yaml(load_config(config, overrides)), end="", markup=False, highlight=False)
        return
    if resume:
        if overrides.get("data") or overrides.get("validation"):
            _refuse_changed_data(resume, overrides)
        _resume(resume)
        return
    cfg = _load(config, overrides)
    job = submit(store(), cfg)
    follow(job.id)


def _load(config: Path | None, overrides: dict) -> SFTConfig:
    from tunesmith.train.config import load_config

    cfg = load_config(config, overrides)
    if cfg.data is None:
        raise TunesmithError(
            "No training data given.",
            "Pass --data train.jsonl (or set `data:` in the --config YAML).",
            param="data",
        )
    return cfg


def submit(store, cfg: SFTConfig):
    """Check the data (refusing bad data with the full report), store canonical copies of the
    files, and create a queued job."""
    from tunesmith.cli.report import render_report
    from tunesmith.data.checks import check
    from tunesmith.data.readers import read
    from tunesmith.data.split import write_jsonl
    from tunesmith.jobs.service import create_job, validate_files
    from tunesmith.models.loading import load_tokenizer

    # Each file is read once: the check and the stored canonical copy use the same records.
    results = [read(path, mapping=cfg.mapping) for path in filter(None, (cfg.data, cfg.validation))]
    tokenizer = load_tokenizer(store.models.resolve(cfg.model))
    report = check(
        results[0],
        tokenizer,
        max_length=cfg.max_length,
        validation=results[1] if len(results) > 1 else None,
        n_epochs=cfg.epochs,
        method="supervised",
    )
    render_report(report, out, brief=report.ok)
    report.raise_for_errors()
    file_ids = []
    with tempfile.TemporaryDirectory() as tmp:
        for result in results:
            name = Path(result.file).stem + ".jsonl"  # stored as canonical chat JSONL
            canonical = write_jsonl(result.records, Path(tmp) / name)
            file_ids.append(store.files.add_path(canonical, "fine-tune", name).id)
    job = create_job(
        store,
        cfg,
        training_file=file_ids[0],
        validation_file=file_ids[1] if len(file_ids) > 1 else None,
        seed=cfg.seed,
    )
    return validate_files(store, job, report)


def follow(job_id: str, resume: bool = False) -> None:
    """Run a queued (or resumable) job here, with a progress bar and clean Ctrl-C."""
    from tunesmith.cli.progress import stop_on_signals, training_bar
    from tunesmith.cli.store import store
    from tunesmith.jobs.control import stop_reason
    from tunesmith.models import threads
    from tunesmith.train.run import run

    allowed = {"queued"} if not resume else {"cancelled", "paused", "failed", "queued"}
    job = store().jobs.transition(
        job_id, "running", allowed_from=allowed, error=None, worker_pid=os.getpid()
    )
    out.print(f"Job [bold]{job.id}[/] running; run folder {job.run_dir}")
    with stop_on_signals() as stop, training_bar(job.id) as report:
        # Training runs on the torch thread; this thread keeps the signals and the bar.
        try:
            job = threads.call(
                lambda: run(
                    job_id,
                    store(),
                    progress=report,
                    # Ctrl-C here, or a cancel/pause through the API (read each step).
                    stop_requested=lambda: (
                        "cancel" if stop.is_set() else stop_reason(store(), job_id)
                    ),
                    resume=resume,
                )
            )
        except KeyboardInterrupt:  # a second Ctrl-C: leave no job `running` behind
            _abandon(job_id)
            raise
    _summary(job)


def _abandon(job_id: str) -> None:
    from tunesmith.cli.store import store
    from tunesmith.train import events as ev

    reason = "interrupted by a second Ctrl-C before a checkpoint was saved"
    store().events.add(job_id, ev.FAILED.format(reason=reason), level="error")
    store().jobs.transition(
        job_id,
        "failed",
        allowed_from={"running"},
        error={"code": "interrupted", "message": reason, "param": None},
    )


def _summary(job) -> None:
    from tunesmith.cli.store import store

    if job.status == "succeeded":
        out.print(f"[green]✓ {job.status}[/]: [bold]{job.fine_tuned_model}[/]")
        out.print(f"  chat with it:  tunesmith chat {job.fine_tuned_model}")
        out.print(f"  metrics:       {Path(job.run_dir) / 'step_metrics.csv'}")
        out.print(f"  loss curve:    {Path(job.run_dir) / 'loss.png'}")
        return
    latest = store().checkpoints.latest(job.id)
    out.print(f"[yellow]{job.status}[/] at checkpoint {latest.model_name if latest else '-'}")
    out.print(f"  continue with: tunesmith train --resume {job.id}")
    raise typer.Exit(130)  # stopped by a signal, cleanly: the shell convention for Ctrl-C


def _resume(job_id: str) -> None:
    from tunesmith.cli.store import store

    job = store().jobs.get(job_id)
    if job.status not in ("cancelled", "paused", "failed"):
        raise TunesmithError(
            f"Job {job_id} is {job.status}; only a cancelled, paused or failed job can resume.",
            param="resume",
        )
    follow(job_id, resume=True)


def _refuse_changed_data(job_id: str, overrides: dict) -> None:
    """`--resume` with --data must name the very data the job trained on."""
    import hashlib

    from tunesmith.cli.store import store
    from tunesmith.data.readers import read
    from tunesmith.data.split import write_jsonl

    job = store().jobs.get(job_id)
    with tempfile.TemporaryDirectory() as tmp:
        canonical = write_jsonl(read(Path(overrides["data"])).records, Path(tmp) / "data.jsonl")
        given = hashlib.sha256(canonical.read_bytes()).hexdigest()
    stored = hashlib.sha256(
        Path(store().files.get(job.training_file).path).read_bytes()
    ).hexdigest()
    if given != stored:
        raise TunesmithError(
            f"{overrides['data']} is not the data job {job_id} trained on.",
            "A resumed run must see the same data (its position in the data is restored). "
            "Start a new job to train on changed data.",
            param="data",
        )


def register(app: typer.Typer) -> None:
    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None, "--config", help="YAML file of settings (flags override it)."
            ),
            annotation=Path | None,
        ),
        inspect.Parameter(
            "print_config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                False, "--print-config", help="Print the merged settings as YAML and exit."
            ),
            annotation=bool,
        ),
        inspect.Parameter(
            "resume",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None, "--resume", help="Continue job JOB from its last checkpoint."
            ),
            annotation=str | None,
        ),
        *config_parameters(SFTConfig),
    ]

    def command(**kwargs: Any) -> None:
        train_command(**kwargs)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = HELP
    app.command("train")(command)
