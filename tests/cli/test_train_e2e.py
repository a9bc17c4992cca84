"""End to end on the real built-in model, through the `tunesmith` command: train, cancel, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunesmith.data.readers import read
from tunesmith.infer.engine import Engine
from tunesmith.infer.sampling import SamplingParams
from tunesmith.store import open_store

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "tunesmith")


def first_lines(source: Path, target: Path, n: int) -> Path:
    target.write_text("".join(source.read_text().splitlines(keepends=True)[:n]))
    return target


def tunesmith(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=os.environ, timeout=900, **kwargs
    )


def test_train_the_built_in_model_and_call_the_result(demo_model, orders, monkeypatch):
    monkeypatch.setenv("TUNESMITH_HOME", str(demo_model.home))
    store = open_store()
    job = store.jobs.get(demo_model.job.id)
    assert job.status == "succeeded"
    metrics = store.events.metrics(job.id)
    assert [m["step"] for m in metrics] == list(range(1, 17))
    first, last = metrics[0]["train_loss"], sum(m["train_loss"] for m in metrics[-4:]) / 4
    assert last < 0.7 * first, (first, last)
    assert metrics[-1]["full_valid_loss"] < metrics[0]["valid_loss"]

    test = read(orders / "test.jsonl").records[0]
    engine = Engine(max_batch=2)
    try:
        params = SamplingParams(max_tokens=80, temperature=0)
        base = engine.chat(store.models.resolve("smollm2-135m-instruct"), test.prompt, params)
        tuned = engine.chat(store.models.resolve(job.fine_tuned_model), test.prompt, params)
    finally:
        engine.close()
    assert tuned.text != base.text
    # The end-of-turn token was in the labels, so the tuned model stops after its answer.
    assert tuned.finish_reason == "stop", tuned.text
    assert '"customer"' in tuned.text


def test_ctrl_c_cancels_cleanly_and_resume_finishes(tmp_path, orders):
    train = first_lines(orders / "train.jsonl", tmp_path / "train.jsonl", 24)
    proc = subprocess.Popen(
        [CLI, "train", "--data", str(train), "--epochs", "2", "--batch-size", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ,
    )  # fmt: skip
    store = open_store()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        jobs = store.jobs.list().data
        if jobs and len(store.events.metrics(jobs[0].id)) >= 2:
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output
    assert "Traceback" not in output

    job = store.jobs.get(jobs[0].id)
    assert job.status == "cancelled"
    checkpoint = store.checkpoints.latest(job.id)
    assert 2 <= checkpoint.step_number < 12
    engine = Engine(max_batch=1)
    try:  # the kept checkpoint is a usable model
        answer = engine.chat(
            store.models.resolve(checkpoint.model_name),
            read(train).records[0].prompt,
            SamplingParams(max_tokens=8, temperature=0),
        )
    finally:
        engine.close()
    assert answer.completion_tokens > 0

    done = tunesmith("train", "--resume", job.id)
    assert done.returncode == 0, done.stdout + done.stderr
    job = store.jobs.get(job.id)
    assert job.status == "succeeded"
    steps = [m["step"] for m in store.events.metrics(job.id)]
    assert steps == list(range(1, 13))
    messages = [e.message for e in store.events.list(job.id, limit=100).data]
    assert any(m.startswith("Fine-tuning job cancelled at step") for m in messages)
    assert any(m.startswith("Fine-tuning job resumed from step") for m in messages)
