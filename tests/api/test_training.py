"""Fine-tuning through the API with real workers: the cookbook flow, cancel, pause, restarts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from tunesmith.store import open_store

CLI = str(Path(sys.executable).parent / "tunesmith")


def lines(source: Path, target: Path, n: int) -> Path:
    target.write_text("".join(source.read_text().splitlines(keepends=True)[:n]))
    return target


def wait_for(predicate, timeout: float = 600, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def hyper(epochs: int, batch: int) -> dict:
    return {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": epochs, "batch_size": batch}},
    }


@pytest.mark.slow
def test_the_cookbook_flow_on_the_built_in_model(serve, client, orders, tmp_path):
    """How_to_finetune_chat_models.ipynb, call for call, against tunesmith."""
    sdk = client(serve(workers=1))
    train = sdk.files.create(
        file=Path(lines(orders / "train.jsonl", tmp_path / "t.jsonl", 20)),
        purpose="fine-tune",
    )
    valid = sdk.files.create(
        file=Path(lines(orders / "validation.jsonl", tmp_path / "v.jsonl", 8)),
        purpose="fine-tune",
    )
    job = sdk.fine_tuning.jobs.create(
        training_file=train.id,
        validation_file=valid.id,
        model="smollm2-135m-instruct",
        suffix="recipe-ner",
        method=hyper(3, 4),
    )
    assert job.status == "validating_files" and job.fine_tuned_model is None

    job = wait_for(
        lambda: (j := sdk.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j
    )
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith("ft:smollm2-135m-instruct:local:recipe-ner:")
    assert job.trained_tokens > 0 and job.finished_at >= job.created_at
    assert job.hyperparameters.n_epochs == 3 and job.hyperparameters.batch_size == 4

    events = sdk.fine_tuning.jobs.list_events(job.id).data  # 20 newest, newest first
    assert len(events) == 20
    events.reverse()
    messages = [e.message for e in events]
    assert messages[-2:] == [
        f"New fine-tuned model created: {job.fine_tuned_model}",
        "The job has successfully completed",
    ]
    assert any(
        m.startswith("Step 15/15: training loss=") and "full validation loss=" in m
        for m in messages
    )
    assert any(m.startswith("Checkpoint created at step 5 with Snapshot ID: ft:") for m in messages)
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and {"step", "train_loss", "total_steps"} <= set(metrics[-1].data)

    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [15, 10, 5]
    assert checkpoints[0].fine_tuned_model_checkpoint.endswith(":ckpt-step-15")
    assert "train_loss" in checkpoints[0].metrics.model_dump(exclude_none=True)

    csv = sdk.files.content(job.result_files[0]).text
    assert (
        csv.splitlines()[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    )
    assert len(csv.splitlines()) == 16

    test = [m for m in (orders / "test.jsonl").read_text().splitlines()][:1]
    import json

    messages_in = json.loads(test[0])["messages"][:2]
    answer = sdk.chat.completions.create(
        model=job.fine_tuned_model, messages=messages_in, temperature=0, max_tokens=100
    )
    content = answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop" and '"customer"' in content
    streamed = sdk.chat.completions.create(
        model=job.fine_tuned_model, messages=messages_in, temperature=0, max_tokens=100, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == content
    ckpt = sdk.chat.completions.create(
        model=checkpoints[1].fine_tuned_model_checkpoint, messages=messages_in, max_tokens=5
    )
    assert ckpt.choices[0].message.content is not None

    ids = {m.id for m in sdk.models.list()}
    assert {
        "smollm2-135m-instruct",
        job.fine_tuned_model,
        checkpoints[0].fine_tuned_model_checkpoint,
    } <= ids
    assert sdk.models.retrieve(job.fine_tuned_model).id == job.fine_tuned_model
    assert sdk.models.delete(job.fine_tuned_model).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve(job.fine_tuned_model)


@pytest.fixture
def long_file(orders, tmp_path) -> Path:
    """100 examples: with batch 1 on the tiny model a job runs long enough to act on it."""
    return lines(orders / "train.jsonl", tmp_path / "long.jsonl", 100)


def running_with_steps(sdk, job_id: str, n: int = 2):
    def check():
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        steps = [e for e in open_store().events.metrics(job_id)]
        return job.status == "running" and len(steps) >= n and job

    return wait_for(check, timeout=300, every=0.1)


def test_cancel_running_and_queued_jobs(serve, client, tiny_model_dir, long_file):
    sdk = client(serve(workers=1, model_dirs=[tiny_model_dir]))
    file = sdk.files.create(file=Path(long_file), purpose="fine-tune")
    first = sdk.fine_tuning.jobs.create(
        training_file=file.id, model=str(tiny_model_dir), method=hyper(1, 1)
    )
    second = sdk.fine_tuning.jobs.create(
        training_file=file.id, model=str(tiny_model_dir), method=hyper(1, 1)
    )
    running_with_steps(sdk, first.id)
    assert sdk.fine_tuning.jobs.retrieve(second.id).status == "queued"  # one worker: one at a time

    assert sdk.fine_tuning.jobs.cancel(second.id).status == "cancelled"
    assert sdk.fine_tuning.jobs.cancel(first.id).status == "cancelled"
    store = open_store()
    stopped = wait_for(lambda: store.checkpoints.latest(first.id), timeout=60)
    assert 2 <= stopped.step_number < 100
    assert sdk.fine_tuning.jobs.retrieve(first.id).status == "cancelled"
    # The runner writes its event once it has stopped, just after the checkpoint lands.
    wait_for(
        lambda: any(
            "cancelled at step" in e.message for e in sdk.fine_tuning.jobs.list_events(first.id)
        ),
        timeout=60,
    )
    with pytest.raises(openai.BadRequestError) as again:
        sdk.fine_tuning.jobs.cancel(first.id)
    assert again.value.status_code == 400
    time.sleep(1.5)
    assert sdk.fine_tuning.jobs.retrieve(second.id).status == "cancelled"  # never started


def test_pause_and_resume_a_running_job(serve, client, tiny_model_dir, long_file):
    sdk = client(serve(workers=1, model_dirs=[tiny_model_dir]))
    file = sdk.files.create(file=Path(long_file), purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(
        training_file=file.id, model=str(tiny_model_dir), method=hyper(1, 2)
    )
    running_with_steps(sdk, job.id)
    assert sdk.fine_tuning.jobs.pause(job.id).status == "paused"
    store = open_store()
    paused_at = wait_for(lambda: store.checkpoints.latest(job.id), timeout=60).step_number
    time.sleep(1)
    assert sdk.fine_tuning.jobs.retrieve(job.id).status == "paused"
    assert sdk.fine_tuning.jobs.resume(job.id).status == "queued"
    done = wait_for(
        lambda: (j := sdk.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j
    )
    assert done.status == "succeeded", done.error
    steps = [m["step"] for m in store.events.metrics(job.id)]
    assert steps == list(range(1, 51)) and 2 <= paused_at < 50


def test_a_job_from_the_cli_shows_up_in_the_api(serve, client, tiny_model_dir, orders, tmp_path):
    data = lines(orders / "train.jsonl", tmp_path / "cli.jsonl", 12)
    done = subprocess.run(
        [CLI, "train", "--data", str(data), "--model", str(tiny_model_dir), "--epochs", "1", "--suffix", "from-cli"],
        capture_output=True, text=True, env=os.environ, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    sdk = client(serve())
    job = sdk.fine_tuning.jobs.list().data[0]
    assert job.status == "succeeded" and ":from-cli:" in job.fine_tuned_model
    assert job.fine_tuned_model in {m.id for m in sdk.models.list()}
    assert (
        sdk.fine_tuning.jobs.list_events(job.id).data[0].message
        == "The job has successfully completed"
    )


def test_a_crashed_worker_costs_its_job_an_attempt_not_the_server(
    serve, client, tiny_model_dir, long_file
):
    """SIGKILL the worker (as the OOM killer would): the job is retried from its last checkpoint
    (here: from the start) by a fresh worker, MAX_ATTEMPTS times, then fails; never loops."""
    from tunesmith.jobs.recovery import MAX_ATTEMPTS

    sdk = client(serve(workers=1, model_dirs=[tiny_model_dir]))
    file = sdk.files.create(file=Path(long_file), purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(
        training_file=file.id, model=str(tiny_model_dir), method=hyper(1, 1)
    )
    killed: set[int] = set()
    for _ in range(MAX_ATTEMPTS):
        running = wait_for(
            lambda: (
                (j := open_store().jobs.get(job.id)).status == "running"
                and j.worker_pid not in killed
                and j
            ),
            timeout=180,
        )
        killed.add(running.worker_pid)
        os.kill(running.worker_pid, signal.SIGKILL)
    failed = wait_for(
        lambda: (j := sdk.fine_tuning.jobs.retrieve(job.id)).status == "failed" and j, timeout=60
    )
    assert failed.error.code == "worker_crashed"
    retried = [e.message for e in sdk.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert sum("it continues from the start" in m for m in retried) == MAX_ATTEMPTS - 1
    assert sdk.models.list().data  # the server still answers
    again = sdk.fine_tuning.jobs.create(
        training_file=file.id, model=str(tiny_model_dir), method=hyper(1, 10)
    )
    assert wait_for(
        lambda: sdk.fine_tuning.jobs.retrieve(again.id).status == "succeeded", timeout=300
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int, log: Path, model_dir: Path) -> subprocess.Popen:
    with open(log, "w") as stderr:  # Popen keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [CLI, "serve", "--port", str(port), "--workers", "1", "--model-dir", str(model_dir)],
            stdout=subprocess.DEVNULL, stderr=stderr, env=os.environ,
        )  # fmt: skip
    sdk = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=5
    )

    def up():
        try:
            return sdk.models.list() is not None
        except openai.APIConnectionError:
            return False

    wait_for(up, timeout=120, every=0.3)
    return proc


def test_jobs_and_files_survive_a_killed_server_and_resume(tiny_model_dir, long_file, tmp_path):
    port = _free_port()
    server = _start_server(port, tmp_path / "first.log", tiny_model_dir)
    # No API key was given, so the server says it listens on loopback only.
    assert "No API key set: listening on 127.0.0.1 only" in (tmp_path / "first.log").read_text()
    sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
    try:
        file = sdk.files.create(file=Path(long_file), purpose="fine-tune")
        job = sdk.fine_tuning.jobs.create(
            training_file=file.id, model=str(tiny_model_dir), method=hyper(2, 2)
        )
        store = open_store()
        wait_for(lambda: store.checkpoints.latest(job.id), timeout=300, every=0.2)  # epoch 1 done
    finally:
        server.send_signal(signal.SIGKILL)  # no shutdown at all
        server.wait()
    wait_for(
        lambda: open_store().jobs.get(job.id).status != "running" or not _alive(job.id), timeout=60
    )

    server = _start_server(port, tmp_path / "second.log", tiny_model_dir)
    try:
        assert file.id in {f.id for f in sdk.files.list()}
        done = wait_for(
            lambda: (
                (j := sdk.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j
            )
        )
        assert done.status == "succeeded", done.error
        messages = [e.message for e in sdk.fine_tuning.jobs.list_events(job.id, limit=200)]
        assert any("resum" in m for m in messages)  # an event says why the job went on
        assert [m["step"] for m in open_store().events.metrics(job.id)][-1] == 100
    finally:
        server.terminate()
        server.wait(timeout=120)


def _alive(job_id: str) -> bool:
    from tunesmith.processes import pid_alive

    return pid_alive(open_store().jobs.get(job_id).worker_pid)


def ended(sdk: openai.OpenAI, job_id: str):
    job = sdk.fine_tuning.jobs.retrieve(job_id)
    return job if job.status in ("succeeded", "failed", "cancelled") else None


def test_dpo_and_reinforcement_through_the_sdk(serve, client, tiny_model_dir, tmp_path):
    """Upload, create with `method`, follow the events, list checkpoints, chat with the result:
    the SDK's calls, unchanged, for OpenAI's dpo and reinforcement methods."""
    import json

    sdk = client(serve(workers=1, model_dirs=[tiny_model_dir]))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps(
                {
                    "input": {"messages": [{"role": "user", "content": f"Fact {i}?"}]},
                    "preferred_output": [{"role": "assistant", "content": f"Fact {i} is true."}],
                    "non_preferred_output": [{"role": "assistant", "content": "No."}],
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": f"Say {i}."}], "answer": str(i)})
            + "\n"
            for i in range(12)
        )
    )
    grader = {
        "type": "string_check",
        "name": "says_it",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.answer }}",
        "operation": "like",
    }
    requests = {
        "dpo": (
            pairs,
            {
                "type": "dpo",
                "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 1, "batch_size": 4}},
            },
            {},
            "train_reward_margin",
        ),
        "reinforcement": (
            prompts,
            {
                "type": "reinforcement",
                "reinforcement": {
                    "grader": grader,
                    "hyperparameters": {"n_epochs": 1, "batch_size": 4},
                },
            },
            {"config": {"max_completion_length": 4, "num_generations": 2}},
            "train_reward",
        ),
    }
    for kind, (data, method, extra, metric) in requests.items():
        file = sdk.files.create(file=data, purpose="fine-tune")
        job = sdk.fine_tuning.jobs.create(
            training_file=file.id, model=str(tiny_model_dir), method=method, extra_body=extra
        )
        assert job.method.type == kind
        job = wait_for(lambda job_id=job.id: ended(sdk, job_id), timeout=300)
        assert job.status == "succeeded", (kind, job.error)
        events = sdk.fine_tuning.jobs.list_events(job.id, limit=100).data
        metrics = [e.data for e in events if e.type == "metrics"]
        assert len(metrics) == 3 and metric in metrics[0], kind
        if kind == "dpo":
            assert job.method.dpo.hyperparameters.beta == 0.2
        else:
            assert job.method.reinforcement.grader.name == "says_it"
        checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job.id).data
        assert [c.step_number for c in checkpoints] == [3]
        answer = sdk.chat.completions.create(
            model=job.fine_tuned_model,
            messages=[{"role": "user", "content": "Fact 1?"}],
            max_tokens=3,
        )
        assert answer.choices[0].message.content is not None
