"""One fine-tuning run, top to bottom: job → data → model → trainer → train → register.

`run` is what `tunesmith train` calls in the foreground and what a worker calls in a child process;
under torchrun every rank calls it (train/rank.py), and only rank 0 writes. Everything it writes
lands in the store, so every door sees the same job. The method (SFT; DPO, ORPO or KTO; GRPO)
decides only how the data is encoded and which trainer runs it (`train/preference.py`,
`train/grpo.py`); the lifecycle around them is one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.data.render import encode
from tunesmith.errors import TunesmithError, out_of_space
from tunesmith.models.naming import checkpoint_name, fine_tuned_name
from tunesmith.models.spec import ModelSpec
from tunesmith.train import events as ev
from tunesmith.train import rank
from tunesmith.train.config import SFTConfig, base_learning_rate, parse_config, resolve

if TYPE_CHECKING:
    from datasets import Dataset

    from tunesmith.store import Store
    from tunesmith.store.jobs import JobRow
    from tunesmith.store.lifecycle import Runner
    from tunesmith.train.config import Resolved

log = logging.getLogger(__name__)
PERIODIC_EVAL_EXAMPLES = (
    32  # validation every N steps uses a fixed sample; the last step, all of it
)


@dataclass
class RunContext:
    """What the callback needs from the run: the store, the names, and where to report."""

    store: Store
    job: JobRow
    config: SFTConfig
    resolved: Resolved
    base: ModelSpec
    run_dir: Path
    progress: ev.ProgressFn | None
    stop_requested: ev.StopFn
    full_eval_dataset: Dataset | None = None
    final_eval: bool = False
    last_valid_loss: float | None = None
    early_stopped: int | None = None
    last_estimate: float = field(default=0.0)
    main: bool = True  # rank 0 (or the only process): the one that writes to the store
    # The lease this run holds: its final moves land only while it still does (a runner cut off
    # past its lease, whose job another host has taken, must not move that job). None: unchecked.
    runner: Runner | None = None

    @property
    def fine_tuned(self) -> str:
        assert self.job.fine_tuned_model is not None
        return self.job.fine_tuned_model

    def report(self, progress: ev.Progress, steps_done: int) -> None:
        if not self.main:
            return
        if self.progress is not None:
            self.progress(progress)
        now = time.time()
        if now - self.last_estimate > 10:  # keep store writes off the hot path
            self.last_estimate = now
            eta = progress.elapsed / max(steps_done, 1) * (progress.total_steps - progress.step)
            self.store.jobs.update(self.job.id, estimated_finish=int(now + eta))

    def metrics(self, data: dict) -> None:
        if self.main:
            self.store.events.add(self.job.id, ev.step_message(data), type="metrics", data=data)

    def checkpoint_saved(self, step: int, metrics: dict) -> None:
        """Register a checkpoint only once the Trainer has written all of it."""
        if not self.main:
            return
        path = self.run_dir / "checkpoints" / f"checkpoint-{step}"
        name = checkpoint_name(self.fine_tuned, step)
        spec = self.trained_spec(name, path, "checkpoint")
        self.store.checkpoints.register(self.job.id, step, spec, metrics)
        self.store.events.add(self.job.id, ev.CHECKPOINT.format(step=step, name=name))

    def trained_spec(self, name: str, folder: Path, kind: str) -> ModelSpec:
        owner = self.store.settings.org
        if self.config.tuning == "lora":
            return ModelSpec(
                name=name,
                kind=kind,
                base=self.base.base,
                weights=self.base.weights,
                adapter=folder,
                owned_by=owner,
            )
        return ModelSpec(
            name=name, kind=kind, base=self.base.base, weights=str(folder), owned_by=owner
        )


def run(
    job_id: str,
    store: Store,
    *,
    progress: ev.ProgressFn | None = None,
    stop_requested: ev.StopFn = lambda: None,
    resume: bool = False,
    runner: Runner | None = None,
) -> JobRow:
    """Train a job its runner has claimed (it is `running`) to its end (succeeded), or to a stop
    (cancelled, paused, queued again), or fail it. The job service claims and releases it;
    `runner`, the lease holder, guards the final moves.

    Raises TunesmithError for failures the user can fix, after marking the job failed.
    """
    job = store.jobs.get(job_id)
    try:
        return _run(job, store, progress, stop_requested, resume, runner)
    except BaseException as exc:
        if rank.world_size() > 1:
            raise  # the supervisor fails the job, naming the rank (train/distributed.py)
        user_error = _fail(store, job_id, exc)
        if user_error is not None and user_error is not exc:
            raise user_error from exc
        raise


def _fail(store: Store, job_id: str, exc: BaseException) -> TunesmithError | None:
    """Mark the job failed with a reason; return the error to show the user, if there is one."""
    message, code, user_error = failure(job_id, exc)
    fail_job(store, job_id, message, code)
    return user_error


def fail_job(store: Store, job_id: str, message: str, code: str) -> None:
    """Move a running job to failed; a job cancelled or paused meanwhile keeps that status (the
    failure is then only logged)."""
    error = {"code": code, "message": message, "param": None}
    if store.jobs.lifecycle.move(job_id, "failed", only_from={"running"}, error=error):
        store.events.add(job_id, ev.FAILED.format(reason=message), level="error")


def failure(job_id: str, exc: BaseException) -> tuple[str, str, TunesmithError | None]:
    """The reason, the error code and the error to show the user (if any) of a failed run."""
    user_error: TunesmithError | None = None
    if isinstance(exc, KeyboardInterrupt):
        message, code = "interrupted before a checkpoint could be saved", "interrupted"
    elif isinstance(exc, TunesmithError):
        message, code, user_error = str(exc), exc.code or "invalid_request", exc
    elif out_of_space(exc):
        message = f"no space left to write {getattr(exc, 'filename', None) or 'the run'}; nothing half-written was kept"
        code = "disk_full"
        user_error = TunesmithError(
            f"Job {job_id} failed: {message}.",
            f"Free some disk space, then continue with `tunesmith train --resume {job_id}`.",
            code=code,
        )
    else:
        message, code = f"internal error: {type(exc).__name__}: {exc}", "internal_error"
        log.error("Job %s failed:\n%s", job_id, traceback.format_exc())
    return message, code, user_error


def _run(
    job: JobRow,
    store: Store,
    progress: ev.ProgressFn | None,
    stop_requested: ev.StopFn,
    resume: bool,
    runner: Runner | None = None,
) -> JobRow:
    from tunesmith.models.loading import load_tokenizer

    config = parse_config(job.config)
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    main = rank.is_main()  # the other ranks of a distributed run train and write nothing

    # 1. Names and data. The tokenizer comes first: the data is tokenized with the model's template.
    base = store.models.resolve(config.model)
    if job.fine_tuned_model is None and main:
        name = fine_tuned_name(base.base, store.settings.org, config.suffix)
        job = store.jobs.update(job.id, fine_tuned_model=name)
    tokenizer = load_tokenizer(base)
    data = _data(job, store, config, tokenizer)
    resolved = resolve(config, len(data.train))
    billed = resolved.epochs * data.tokens
    method = dict(job.method)  # the numbers "auto" resolved to; the rest (a grader) kept
    section = dict(method.get(method["type"]) or {})
    section["hyperparameters"] = {
        **section.get("hyperparameters", {}),
        **_hyperparameters(config, resolved),
    }
    method[method["type"]] = section
    checkpoint = store.checkpoints.latest(job.id) if resume else None
    if main:
        job = store.jobs.update(job.id, method=method, data_hash=data.sha256)
        started = ev.RESUMED.format(step=checkpoint.step_number) if checkpoint else ev.STARTED
        ranks = rank.world_size()
        store.events.add(job.id, started, data={"world_size": ranks} if ranks > 1 else None)

    # 2. Model and trainer.
    ctx = RunContext(
        store=store,
        job=job,
        config=config,
        resolved=resolved,
        base=base,
        run_dir=run_dir,
        progress=progress,
        stop_requested=stop_requested,
        full_eval_dataset=data.full_eval,
        main=main,
        runner=runner,
    )
    trainer, callback = _trainer(ctx, tokenizer, data)

    # 3. Train. A stop request ends the loop at a step boundary, after saving a checkpoint.
    try:
        trainer.train(resume_from_checkpoint=checkpoint.path if checkpoint else None)
    except BaseException:
        if main:
            store.checkpoints.prune(job.id, run_dir)  # a save cut off (full disk) is no checkpoint
        raise

    if callback.stop_reason and ctx.early_stopped is None:
        return _stopped(ctx, callback.stop_reason, trainer.state.global_step)

    # 4. Save, then register and succeed in one transaction: a cancel or pause that lands during
    # the save leaves the job stopped with no callable final model (its checkpoints stay).
    final = _save_atomically(trainer, tokenizer, run_dir / "model", main)
    if not main:
        return store.jobs.get(job.id)
    result_file = _write_results(ctx)
    spec = ctx.trained_spec(ctx.fine_tuned, final, "fine-tuned")
    try:
        job = store.jobs.succeed(
            job.id, spec, held_by=runner, trained_tokens=billed, result_files=[result_file],
            estimated_finish=None,
        )  # fmt: skip
    except TunesmithError as exc:
        if exc.code != "invalid_job_state":
            raise
        status = store.jobs.get(job.id).status
        store.events.add(job.id, ev.STOPPED_AFTER_LAST_STEP.format(status=status), level="warn")
        return store.jobs.get(job.id)
    store.events.add(job.id, ev.MODEL_CREATED.format(name=ctx.fine_tuned))
    store.events.add(job.id, ev.SUCCEEDED)
    return job


@dataclass
class RunData:
    """The job's data, encoded for its method with the model's template."""

    train: Dataset
    periodic_eval: Dataset | None  # a fixed sample, for validation every N steps
    full_eval: Dataset | None  # all of it, for the last step
    sha256: str  # of the training file: a resumed run must see the same data
    tokens: int  # in one pass over the training data (what a job is billed per epoch)


def _data(job: JobRow, store: Store, config: SFTConfig, tokenizer) -> RunData:
    from tunesmith.data.readers import read

    train_path = Path(store.files.get(job.training_file).path)  # in its own format
    sha256 = hashlib.sha256(train_path.read_bytes()).hexdigest()
    if job.data_hash not in (None, sha256):
        raise TunesmithError(
            f"The training data of {job.id} changed since the run started.",
            "A resumed run must see the same data; start a new job for new data.",
            param="training_file",
        )
    fmt = config.data_format
    train = _encoded(read(train_path, mapping=config.mapping, fmt=fmt).records, config, tokenizer)
    full = None
    if job.validation_file:
        valid_path = Path(store.files.get(job.validation_file).path)
        valid = read(valid_path, mapping=config.mapping, fmt=fmt).records
        full = _encoded(valid, config, tokenizer)
    return RunData(train, periodic_sample(full, config.seed), full, sha256, _tokens(train))


def _encoded(records: list, config: SFTConfig, tokenizer) -> Dataset:
    """Records as the method's trainer takes them."""
    from datasets import Dataset

    from tunesmith.data import preference
    from tunesmith.data.preference_formats import to_kto
    from tunesmith.train import grpo
    from tunesmith.train import preference as pref

    n = config.max_length
    if config.method == "sft":
        encoded = [encode(tokenizer, r, n) for r in records]
        return Dataset.from_dict(
            {"input_ids": [e.input_ids for e in encoded], "labels": [e.labels for e in encoded]}
        )
    if config.method == "grpo":
        return grpo.prompt_dataset(records, tokenizer)
    if config.method == "kto":
        examples = to_kto(records)
        encoded = [preference.encode_answer(tokenizer, e.input, e.output, n) for e in examples]
        return pref.unit_dataset(pref.kto_examples(encoded, [e.label for e in examples]))
    pairs = [preference.encode_pair(tokenizer, r, n) for r in records]
    return pref.unit_dataset(pref.pair_examples(pairs))


def _tokens(dataset: Dataset) -> int:
    if "input_ids" in dataset.column_names:
        return sum(len(ids) for ids in dataset["input_ids"])
    if "ids" in dataset.column_names:
        return sum(len(seq) for unit in dataset["ids"] for seq in unit)
    return 0  # prompts to sample from: tokens are counted as they are generated


def periodic_sample(full: Dataset | None, seed: int) -> Dataset | None:
    """The fixed sample of the validation set that the validation every N steps uses."""
    if full is None:
        return None
    return full.shuffle(seed=seed).select(range(min(PERIODIC_EVAL_EXAMPLES, len(full))))


def _hyperparameters(config: SFTConfig, resolved: Resolved) -> dict[str, Any]:
    out = {
        "n_epochs": resolved.epochs,
        "batch_size": resolved.batch_size,
        "learning_rate_multiplier": round(resolved.learning_rate / base_learning_rate(config), 6),
        "learning_rate": resolved.learning_rate,
    }
    if hasattr(config, "beta"):
        out["beta"] = config.beta
    return out


def _stopped(ctx: RunContext, reason: str, step: int) -> JobRow:
    """Acknowledge a stop at a step boundary. A cancel or pause through a door has set the
    status already; the runner's own reasons (Ctrl-C, a server stopping) move it here."""
    if not ctx.main:
        return ctx.store.jobs.get(ctx.job.id)
    latest = ctx.store.checkpoints.latest(ctx.job.id)
    name = latest.model_name if latest else "none"
    to, message = {
        "requeue": ("queued", ev.REQUEUED.format(step=step)),
        "pause": ("paused", ev.PAUSED.format(step=step, name=name)),
        "cancel": ("cancelled", ev.CANCELLED.format(step=step, name=name)),
    }[reason]
    if (
        not ctx.store.jobs.lifecycle.move(ctx.job.id, to, only_from={"running"}, held_by=ctx.runner)
        and reason == "requeue"
    ):
        return ctx.store.jobs.get(ctx.job.id)  # its lease is gone: the job is another's now
    ctx.store.events.add(ctx.job.id, message)
    return ctx.store.jobs.get(ctx.job.id)


def _save_atomically(trainer, tokenizer, target: Path, main: bool = True) -> Path:
    """The final model, moved into place whole. Every rank calls the Trainer's save (FSDP and
    DeepSpeed gather the weights from all of them); only rank 0 writes."""
    if not main:
        trainer.save_model(str(target.parent / ".model-rank-save"))  # a name rank 0 ignores
        return target
    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=target.parent))
    try:
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_results(ctx: RunContext) -> str:
    from tunesmith.train.results import plot_curves, step_metrics_csv

    metrics = ctx.store.events.metrics(ctx.job.id)
    csv_path = ctx.run_dir / "step_metrics.csv"
    csv_path.write_text(step_metrics_csv(metrics))
    if metrics:
        plot_curves(metrics, ctx.run_dir / "loss.png", ctx.fine_tuned)
    return ctx.store.files.add_path(csv_path, "fine-tune-results", "step_metrics.csv").id


def _trainer(ctx: RunContext, tokenizer, data: RunData):
    """The method's trainer, with the run's callback and no stdout printing."""
    from transformers import PrinterCallback, ProgressCallback, set_seed

    from tunesmith.train.callbacks import RunCallback
    from tunesmith.train.model import build_model, trl_args

    # The seed decides the adapter's initial weights too, so it is set before the model is
    # built (the Trainer seeds only its own loop): a job re-run with its seed trains the same.
    set_seed(ctx.config.seed)
    method = ctx.config.method
    # GRPO samples from left-padded prompts: the packed-rows attention has no mask for those.
    packing = ctx.config.packing and method != "grpo"
    model, device, precision = build_model(
        ctx.config.model_copy(update={"packing": packing}), ctx.base
    )
    callback = RunCallback(ctx)
    if method == "grpo":
        from tunesmith.train import grpo

        trainer = grpo.trainer(
            ctx, model, tokenizer, data.train, data.periodic_eval, device, precision, callback
        )
    else:
        args = trl_args(
            ctx.config, ctx.resolved, ctx.run_dir, device, precision, data.periodic_eval is not None
        )
        if method == "sft":
            trainer = _sft_trainer(ctx, model, tokenizer, data, args, callback)
        else:
            trainer = _preference_trainer(ctx, model, tokenizer, data, args, callback)
    # The default printer would write dicts to stdout; progress goes through events instead.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    callback.trainer = trainer
    return trainer, callback


def _sft_trainer(ctx: RunContext, model, tokenizer, data: RunData, args, callback):
    from tunesmith.data.packing import PackedCollator, PaddedCollator
    from tunesmith.train.trainer import TunesmithSFTTrainer

    collator = (
        PackedCollator(tokenizer.pad_token_id, ctx.config.pack_row_tokens)
        if ctx.config.packing
        else PaddedCollator(tokenizer.pad_token_id)
    )
    return TunesmithSFTTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=data.train,
        eval_dataset=data.periodic_eval,
        processing_class=tokenizer,
        callbacks=[callback],
    )


def _preference_trainer(ctx: RunContext, model, tokenizer, data: RunData, args, callback):
    """DPO, ORPO or KTO. The reference log-probabilities are computed (or read from the run
    folder) before the first step, by the model as it starts."""
    from tunesmith.train import preference as pref

    config = ctx.config
    objective = pref.objective_for(config)
    collator = pref.UnitCollator(tokenizer.pad_token_id, config.pack_row_tokens)
    train, full = data.train, data.full_eval
    if objective.needs_reference:
        if args.device.type != "cpu" and not config.load_in_4bit:
            model.to(args.device)
        sets = {"train": train} | ({"valid": full} if full is not None else {})
        started = time.monotonic()
        logps = pref.reference_logps(
            model,
            sets,
            collator,
            batch_size=ctx.resolved.batch_size,
            device=args.device.type,
            precision="bf16" if args.bf16 else "fp32",
            fresh_adapter=config.tuning == "lora" and ctx.base.adapter is None,
            cache=ctx.run_dir / pref.REFERENCE_FILE,
            key=f"{ctx.job.id}:{ctx.job.data_hash}:{ctx.base.name}:{config.max_length}",
            exact=frozenset({"valid"}),
        )
        seconds = time.monotonic() - started
        ctx.store.events.add(
            ctx.job.id,
            ev.REFERENCE_READY.format(n=len(logps["train"]), seconds=seconds),
            data={"reference_seconds": round(seconds, 3)},
        )
        train = train.add_column("ref", logps["train"])
        if full is not None:
            full = full.add_column("ref", logps["valid"])
    ctx.full_eval_dataset = full
    return pref.PreferenceTrainer(
        model=model,
        args=args,
        data_collator=collator,
        train_dataset=train,
        eval_dataset=periodic_sample(full, config.seed),
        processing_class=tokenizer,
        callbacks=[callback],
        objective=objective,
    )
