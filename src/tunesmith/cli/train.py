"""`tunesmith train`: check the data, create a job in the store, and train it in the foreground."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from tunesmith.cli.console import err, out
from tunesmith.cli.options import config_parameters, generated_command, overrides_from_flags
from tunesmith.errors import TunesmithError
from tunesmith.store.lifecycle import Runner
from tunesmith.train.autotrain import Note
from tunesmith.train.config import METHOD_CONFIGS, SFTConfig

HELP = """Fine-tune a model on your data (SFT with LoRA by default), in the foreground.

--method dpo|orpo|kto trains on preference pairs (KTO also on single answers labelled good or
bad); --method grpo --grader grader.json (or grader.py) trains on prompts scored by a grader.

The data is checked first. The job lands in the store, so `tunesmith jobs` and the API see it.
Ctrl-C stops after the current step and keeps a checkpoint; `--resume JOB` continues from it.
Settings come from defaults < --config YAML < flags.

--nproc N trains on N processes through torchrun (DDP; gloo on a CPU, nccl on GPUs);
--accelerate-config zero2|fsdp2|FILE launches FSDP or DeepSpeed through accelerate, on GPUs.
--print-command shows the launch command without training.

Example: tunesmith train --data train.jsonl --validation valid.jsonl --suffix orders --epochs 2
"""


def train_command(
    config: Path | None = None,
    resume: str | None = None,
    print_config: bool = False,
    print_command: bool = False,
    strict: bool = False,
    **flags: Any,
) -> None:
    from tunesmith.cli.store import store
    from tunesmith.train.config import dump_yaml, load_config

    overrides = overrides_from_flags(tuple(METHOD_CONFIGS.values()), flags)
    if print_config:  # the merged settings as YAML: a starting point for --config
        notes: list[Note] = []
        cfg = load_config(config, overrides, strict=strict, notes=notes)
        print_notes(notes, console=err)  # stdout stays the YAML alone, to redirect into a file
        out.print(dump_yaml(cfg), end="", markup=False, highlight=False, soft_wrap=True)
        return
    if print_command:
        cfg = None if resume else load_config(config, overrides, strict=strict)
        _print_command(cfg, resume, overrides)
        return
    if resume:
        from tunesmith.jobs.service import claim_to_resume

        if overrides.get("data") or overrides.get("validation"):
            _refuse_changed_data(resume, overrides)
        follow(claim_to_resume(store(), resume).id)
        return
    notes = []
    cfg = load_config(config, overrides, strict=strict, notes=notes)
    print_notes(notes)
    follow(submit(store(), cfg, notes).id)


def _print_command(cfg: SFTConfig | None, job_id: str | None, overrides: dict) -> None:
    """The command each machine's ranks run. With `--resume JOB`, that job's own settings, this
    machine's flags (`--node-rank`, ...) over them: the line another machine of the run runs."""
    from pydantic import ValidationError

    from tunesmith.cli.store import store
    from tunesmith.train.config import config_error, parse_config
    from tunesmith.train.distributed import is_distributed, launch_command, shown

    if job_id is not None:
        here = {
            k: v for k, v in overrides.items() if k in ("node_rank", "master_addr", "master_port")
        }
        try:
            cfg = parse_config({**store().jobs.get(job_id).config, **here})
        except ValidationError as exc:
            raise config_error(exc, f"job {job_id} with this machine's flags") from None
    assert cfg is not None  # without a job, the flags' config
    if not is_distributed(cfg):
        raise TunesmithError(
            "This run trains in one process: there is no launch command.",
            "Add --nproc N (or --nnodes, --accelerate-config) to train on many processes.",
            param="nproc",
        )
    command = shown(launch_command(cfg, job_id or "JOB_ID"))
    out.print(command, markup=False, highlight=False, soft_wrap=True)


def print_notes(notes: list[Note], console: Console = out) -> None:
    """What became of a foreign config's settings: warnings in yellow, the rest dim."""
    for note in notes:
        style = "yellow" if note.level == "warning" else "dim"
        mark = "! " if note.level == "warning" else ""
        console.print(f"[{style}]{mark}{note.key}:[/] {escape(note.message)}", highlight=False)


def submit(store, cfg: SFTConfig, notes: Sequence[Note] = ()):
    """Check the data (refusing bad data with the full report), store the files, and create a
    job claimed by this process: no server worker can take it before `follow` runs it."""
    from tunesmith.cli.report import render_report
    from tunesmith.errors import DataError
    from tunesmith.jobs.service import submit_here

    try:
        submitted = submit_here(store, cfg)
    except DataError as exc:
        render_report(exc.report, out, brief=False)
        raise
    render_report(submitted.report, out, brief=True)
    # The translation ran before the job existed: its warnings join the job's events now.
    for note in notes:
        if note.level == "warning":
            store.events.add(submitted.job.id, str(note), level="warn")
    return submitted.job


def follow(job_id: str) -> None:
    """Train a job this process has claimed, with a progress bar and a clean Ctrl-C."""
    from tunesmith.cli.progress import stop_on_signals, training_bar
    from tunesmith.cli.store import store
    from tunesmith.jobs.service import run_claimed
    from tunesmith.models import threads

    job = store().jobs.get(job_id)
    out.print(f"Job [bold]{job.id}[/] running; run folder {job.run_dir}")
    with stop_on_signals() as stop, training_bar(job.id) as report:
        # Training runs on the torch thread; this thread keeps the signals and the bar.
        try:
            job = threads.call(
                lambda: run_claimed(
                    store(),
                    job_id,
                    Runner.here(),
                    progress=report,
                    stop_requested=lambda: "cancel" if stop.is_set() else None,
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
    error = {"code": "interrupted", "message": reason, "param": None}
    if store().jobs.lifecycle.move(job_id, "failed", only_from={"running"}, error=error):
        store().events.add(job_id, ev.FAILED.format(reason=reason), level="error")
    store().jobs.release(job_id, Runner.here())


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


def _refuse_changed_data(job_id: str, overrides: dict) -> None:
    """`--resume` with --data must name the very data the job trained on (the stored copy keeps
    the file's bytes, so the bytes are compared)."""
    import hashlib

    from tunesmith.cli.store import store

    job = store().jobs.get(job_id)
    given = hashlib.sha256(Path(overrides["data"]).read_bytes()).hexdigest()
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
            "print_command",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                False,
                "--print-command",
                help="Print the torchrun (or accelerate) command a run of many processes "
                "launches, and exit. With --resume JOB --node-rank R: the command machine R of "
                "that job's run starts its ranks with.",
            ),
            annotation=bool,
        ),
        inspect.Parameter(
            "strict",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                False,
                "--strict",
                help="Refuse a foreign config's settings that can only be approximated here "
                "(an AutoTrain config's int4 quantization on a CPU, push_to_hub, ...).",
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
        *config_parameters(*METHOD_CONFIGS.values()),
    ]

    app.command("train")(generated_command(train_command, params, HELP))
