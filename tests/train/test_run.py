"""A whole training run on a tiny model: events, metrics, checkpoints, stop, resume, full disk."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.jobs.service import create_job, validate_files
from tunesmith.store import open_store
from tunesmith.store.lifecycle import Runner
from tunesmith.train.config import SFTConfig
from tunesmith.train.run import run

RUNNER = Runner(os.getpid(), "test-host")


def write_lines(path: Path, source: Path, n: int) -> Path:
    path.write_text("".join(source.read_text().splitlines(keepends=True)[:n]))
    return path


@pytest.fixture
def files(tmp_path, orders):
    return (
        write_lines(tmp_path / "train.jsonl", orders / "train.jsonl", 16),
        write_lines(tmp_path / "valid.jsonl", orders / "validation.jsonl", 6),
    )


def queued_job(store, model: Path, files, **settings):
    train = store.files.add_path(files[0], "fine-tune")
    valid = store.files.add_path(files[1], "fine-tune")
    config = SFTConfig(model=str(model), suffix="t", epochs=2, batch_size=4, **settings)
    job = create_job(store, config, training_file=train.id, validation_file=valid.id, seed=7)
    job = validate_files(store, job)
    assert job.status == "queued"
    return store.jobs.claim(job.id, RUNNER, only_from={"queued"})


def claim_again(store, job_id: str) -> None:
    """What `tunesmith train --resume` does before it runs a stopped job again."""
    store.jobs.release(job_id, RUNNER)
    store.jobs.claim(job_id, RUNNER, only_from={"cancelled", "paused", "failed"})


def step_losses(store, job_id) -> dict[int, float]:
    return {m["step"]: m["train_loss"] for m in store.events.metrics(job_id)}


def test_run_succeeds_with_openai_events_metrics_and_results(tiny_model_dir, files):
    store = open_store()
    job = run(queued_job(store, tiny_model_dir, files).id, store)

    assert job.status == "succeeded"
    assert job.fine_tuned_model.startswith("ft:tiny-llama0:local:t:")
    assert job.trained_tokens > 0 and job.finished_at is not None
    messages = [e.message for e in reversed(store.events.list(job.id, limit=100).data)]
    assert messages[0] == f"Created fine-tuning job: {job.id}"
    assert messages[1].startswith("Validating training file: file-")
    assert messages[2:4] == [
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
    ]
    assert messages[-2:] == [
        f"New fine-tuned model created: {job.fine_tuned_model}",
        "The job has successfully completed",
    ]
    steps = [m for m in messages if m.startswith("Step ")]
    assert len(steps) == 8 and steps[0].startswith("Step 1/8: training loss=")
    assert "full validation loss=" in steps[-1]
    checkpoints = [m for m in messages if m.startswith("Checkpoint created at step")]
    assert len(checkpoints) == 2  # one per epoch

    metrics = store.events.metrics(job.id)
    assert {"step", "total_steps", "train_loss", "train_mean_token_accuracy"} <= metrics[0].keys()
    assert any("valid_loss" in m for m in metrics)
    assert "full_valid_loss" in metrics[-1]

    run_dir = Path(job.run_dir)
    csv = (run_dir / "step_metrics.csv").read_text().splitlines()
    assert csv[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert len(csv) == 9
    assert (run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"
    result = store.files.get(job.result_files[0])
    assert (result.purpose, result.filename) == ("fine-tune-results", "step_metrics.csv")

    spec = store.models.resolve(job.fine_tuned_model)
    assert spec.adapter == run_dir / "model"
    assert (spec.adapter / "adapter_model.safetensors").exists()
    ckpts = store.checkpoints.list(job.id).data
    assert [c.step_number for c in ckpts] == [8, 4]  # newest first
    assert all(store.models.resolve(c.model_name).adapter.exists() for c in ckpts)
    assert ckpts[0].metrics["step"] == 8 and "train_loss" in ckpts[0].metrics


def test_stop_keeps_a_checkpoint_and_resume_matches_an_uninterrupted_run(tiny_model_dir, files):
    store = open_store()
    straight = run(queued_job(store, tiny_model_dir, files).id, store)
    expected = step_losses(store, straight.id)

    job = queued_job(store, tiny_model_dir, files)
    calls = iter(range(100))
    stopped = run(job.id, store, stop_requested=lambda: "cancel" if next(calls) == 2 else None)
    assert stopped.status == "cancelled"
    latest = store.checkpoints.latest(job.id)
    assert latest.step_number == 3
    assert (Path(latest.path) / "optimizer.pt").exists()
    assert store.models.resolve(latest.model_name).adapter == Path(latest.path)

    claim_again(store, job.id)
    resumed = run(job.id, store, resume=True)
    assert resumed.status == "succeeded"
    got = step_losses(store, job.id)
    assert sorted(got) == list(range(1, 9))
    # Optimizer, scheduler, RNG and data position all restored: the same losses as no stop at all.
    for step in range(4, 9):
        assert got[step] == pytest.approx(expected[step], rel=1e-3), step


def test_cancel_in_the_last_step_registers_no_final_model_and_resume_finishes(
    tiny_model_dir, files
):
    """A cancel through the API that lands in the last step: the job stays cancelled with no
    callable final model (its checkpoints stay callable); a resume then succeeds and registers
    it once, where a second registration used to fail every retry with an IntegrityError."""
    store = open_store()
    job = queued_job(store, tiny_model_dir, files)
    total = 8  # 16 examples, batch 4, 2 epochs
    calls = iter(range(1, 100))

    def cancel_at_the_end() -> str | None:
        if next(calls) < total:
            return None
        store.jobs.lifecycle.move(job.id, "cancelled", only_from={"running"})  # as the API does
        return "cancel"

    stopped = run(job.id, store, stop_requested=cancel_at_the_end)
    assert stopped.status == "cancelled" and stopped.to_openai("local")["fine_tuned_model"] is None
    assert store.models.get(stopped.fine_tuned_model) is None
    latest = store.checkpoints.latest(job.id)
    assert latest.step_number == total
    assert store.models.resolve(latest.model_name).kind == "checkpoint"

    claim_again(store, job.id)
    done = run(job.id, store, resume=True)
    assert done.status == "succeeded"
    assert store.models.get(done.fine_tuned_model).kind == "fine-tuned"
    assert [e for e in store.events.list(job.id, limit=200).data if e.level == "error"] == []


def test_changed_training_data_refuses_to_resume(tiny_model_dir, files):
    store = open_store()
    job = queued_job(store, tiny_model_dir, files)
    run(job.id, store, stop_requested=lambda: "cancel")
    Path(store.files.get(job.training_file).path).write_text(files[0].read_text()[:-200])
    claim_again(store, job.id)
    with pytest.raises(Exception, match="changed since the run started"):
        run(job.id, store, resume=True)
    assert store.jobs.get(job.id).status == "failed"


def _limit_file_size() -> None:
    # Writes past 1 MB fail with EFBIG (like a full disk) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_full_disk_while_saving_registers_no_checkpoint(tiny_model_dir, files, tunesmith_home):
    cli = Path(sys.executable).parent / "tunesmith"
    done = subprocess.run(
        [str(cli), "train", "--data", str(files[0]), "--model", str(tiny_model_dir),
         "--epochs", "1", "--batch-size", "4"],
        capture_output=True, text=True, preexec_fn=_limit_file_size, env=os.environ, timeout=300,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output and "no space left" in output
    store = open_store()
    job = store.jobs.list().data[0]
    assert job.status == "failed" and job.error["code"] == "disk_full"
    assert store.checkpoints.latest(job.id) is None
    assert not [m for m in store.models.list() if m.name.startswith("ft:")]
    assert not list((Path(job.run_dir) / "checkpoints").glob("checkpoint-*"))
    assert "no space left" in job.error["message"]  # the reason is stored for the API too
