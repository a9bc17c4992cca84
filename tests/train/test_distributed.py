"""One job on many processes: 2 CPU ranks under torchrun train like 1 process accumulating 2
micro-batches; the launch command; a rank that dies fails the job naming it.

The DDP runs are real: torchrun starts `python -m tunesmith.train.rank` twice, over gloo. On
this 2-core machine they are slower than one process; the point is that they are correct.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.errors import TunesmithError
from tunesmith.jobs import control
from tunesmith.jobs.service import claim_to_resume, create_job, run_claimed, validate_files
from tunesmith.models.catalog import DEFAULT_MODEL
from tunesmith.store import open_store
from tunesmith.store.lifecycle import Runner
from tunesmith.train import distributed, rank
from tunesmith.train.config import SFTConfig, load_config, resolve

RUNNER = Runner.here()
# Measured on a 2-core CPU in fp32, one thread per process: per-step losses agree to 2.5e-7 (step
# 1 exactly), the final adapter to 1.1e-6 relative. With the single process on 2 threads the
# adapter agreed to 2.9e-5: the bounds leave room for other summation orders.
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-4


def claimed_job(store, data: Path, model: str, **settings):
    train = store.files.add_path(data, "fine-tune")
    config = SFTConfig(model=model, suffix="ddp", **settings)
    job = create_job(store, config, training_file=train.id, seed=7)
    return validate_files(store, job, claim_for=RUNNER)


def adapter_weights(run_dir: str) -> dict:
    from safetensors.torch import load_file

    return load_file(Path(run_dir) / "model" / "adapter_model.safetensors")


@pytest.fixture
def orders_lines(tmp_path, orders):
    def write(n: int) -> Path:
        path = tmp_path / f"train-{n}.jsonl"
        path.write_text("".join((orders / "train.jsonl").read_text().splitlines(True)[:n]))
        return path

    return write


# --- the equivalence, on the built-in model --------------------------------------------------------
@pytest.mark.slow
def test_two_ddp_ranks_train_like_one_process_accumulating_two(builtin_dir, orders_lines):
    """batch_size 8 per optimizer step: 2 ranks x 4 examples, against 1 process x 2 micro-batches
    of 4. Rows of 300 tokens pack two ~130-token examples each, so each micro-batch is two packed
    rows trained one by one (`backward_by_rows`), the head only at scored positions."""
    store = open_store()
    data = orders_lines(24)  # 3 optimizer steps
    common = {
        "epochs": 1,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "precision": "fp32",  # bf16 autocast would round differently in each layout
        "pack_row_tokens": 300,
        "device": "cpu",
    }
    one = claimed_job(store, data, DEFAULT_MODEL, gradient_accumulation_steps=2, **common)
    with one_thread():  # as each rank has (OMP_NUM_THREADS=1 on 2 cores)
        one = run_claimed(store, one.id, RUNNER)
    two = claimed_job(store, data, DEFAULT_MODEL, nproc=2, **common)
    two = run_claimed(store, two.id, RUNNER)
    assert (one.status, two.status) == ("succeeded", "succeeded")

    # Two processes really ran, as ranks 0 and 1 of 2, and both finished.
    statuses = rank.read_statuses(Path(two.run_dir))
    assert [(s["rank"], s["world_size"], s["state"]) for s in statuses] == [
        (0, 2, "done"),
        (1, 2, "done"),
    ]
    assert len({s["pid"] for s in statuses} | {os.getpid()}) == 3
    events = store.events.list(two.id, limit=100).data
    assert any(e.data == {"world_size": 2} for e in events if e.message.endswith("started"))

    # Same losses step by step (rank 0 writes them, summed over both ranks' scored tokens).
    losses = [{m["step"]: m["train_loss"] for m in store.events.metrics(j.id)} for j in (one, two)]
    assert sorted(losses[0]) == sorted(losses[1]) == [1, 2, 3]
    tokens = [[m["scored_tokens"] for m in store.events.metrics(j.id)] for j in (one, two)]
    assert tokens[0] == tokens[1]  # each step saw the same examples
    loss_gap = max(abs(losses[0][s] - losses[1][s]) for s in losses[0])
    assert loss_gap < LOSS_TOLERANCE, losses

    # Same adapter at the end.
    a, b = adapter_weights(one.run_dir), adapter_weights(two.run_dir)
    assert a.keys() == b.keys()
    assert _relative_gap(a, b, "lora_") < WEIGHT_TOLERANCE  # every adapter weight
    assert _relative_gap(a, b, "lora_B") < WEIGHT_TOLERANCE  # the part that starts at zero
    moved = max(float(a[k].abs().max()) for k in a if "lora_B" in k)
    assert moved > 1e-4  # lora_B starts at zero: the adapter did train
    print(f"measured: loss gap {loss_gap:.1e}, weight gap {_relative_gap(a, b, 'lora_'):.1e}")


@contextmanager
def one_thread():
    """Torch on one thread. With a thread per core on a machine other work shares, OpenMP's
    threads wait on each other: a 2-step run measured 6 minutes against 25 s for the 2 ranks."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _relative_gap(a: dict, b: dict, part: str) -> float:
    """||a - b|| / ||a|| over the tensors whose names contain `part`.

    Relative and over whole tensors, not per element: Adam moves an element whose gradient is
    ~0 by about ±lr whichever way its last bits round, so single elements differ by up to lr
    (5e-4 measured) while the adapter as a whole agrees to ~1e-6."""
    keys = [k for k in a if part in k]
    diff = sum(float(((a[k] - b[k]) ** 2).sum()) for k in keys)
    norm = sum(float((a[k] ** 2).sum()) for k in keys)
    return (diff / norm) ** 0.5


# --- stops and resumes -----------------------------------------------------------------------------
def test_a_cancelled_ddp_job_stops_every_rank_at_one_step_and_resumes_to_the_same_end(
    tiny_model_dir, orders_lines
):
    """Rank 0 reads the cancel and tells rank 1 at the same step end: both save and exit cleanly
    (a rank one step ahead would wait forever in the next step's all-reduce). The resumed job
    then ends where an uninterrupted one ends."""
    store = open_store()
    data = orders_lines(16)
    settings = {"nproc": 2, "epochs": 2, "batch_size": 2, "learning_rate": 1e-3}
    straight = run_claimed(
        store, claimed_job(store, data, str(tiny_model_dir), **settings).id, RUNNER
    )
    assert straight.status == "succeeded"

    job = claimed_job(store, data, str(tiny_model_dir), **settings)
    thread = threading.Thread(target=run_claimed, args=(store, job.id, RUNNER))
    thread.start()
    _wait_for_training(store, job.id, Path(job.run_dir))
    control.cancel(store, job.id)
    thread.join(timeout=120)
    stopped = store.jobs.get(job.id)
    assert stopped.status == "cancelled"
    step = store.checkpoints.latest(job.id).step_number
    assert 1 <= step < 16
    statuses = rank.read_statuses(Path(job.run_dir))
    assert [(s["rank"], s["state"]) for s in statuses] == [(0, "done"), (1, "done")]

    store.jobs.release(job.id, RUNNER)
    resumed = run_claimed(store, claim_to_resume(store, job.id, RUNNER).id, RUNNER)
    assert resumed.status == "succeeded"
    losses = [
        {m["step"]: m["train_loss"] for m in store.events.metrics(j.id)} for j in (straight, job)
    ]
    assert sorted(losses[1]) == list(range(1, 17))
    for later in range(step + 1, 17):  # after the resume: optimizer, RNG and data restored
        assert losses[1][later] == pytest.approx(losses[0][later], rel=1e-4), later
    gap = _relative_gap(adapter_weights(straight.run_dir), adapter_weights(job.run_dir), "lora_")
    print(f"measured: resumed against straight, weight gap {gap:.1e}, stopped at step {step}")
    assert gap < WEIGHT_TOLERANCE


def test_an_api_job_with_nproc_runs_on_two_ranks_under_a_worker(
    serve, tiny_model_dir, orders_lines
):
    import openai

    url = serve(workers=1, model_dirs=[tiny_model_dir])
    with openai.OpenAI(base_url=url, api_key="test", max_retries=0, timeout=60) as sdk:
        with orders_lines(12).open("rb") as f:
            uploaded = sdk.files.create(file=f, purpose="fine-tune")
        hyperparameters = {"n_epochs": 1, "batch_size": 2}
        job = sdk.fine_tuning.jobs.create(
            model=str(tiny_model_dir),
            training_file=uploaded.id,
            method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
            extra_body={"config": {"nproc": 2}},
        )
        deadline = time.monotonic() + 240
        while (job := sdk.fine_tuning.jobs.retrieve(job.id)).status not in (
            "succeeded",
            "failed",
            "cancelled",
        ):
            assert time.monotonic() < deadline, job.status
            time.sleep(0.5)
    assert job.status == "succeeded", job.error
    statuses = rank.read_statuses(Path(open_store().jobs.get(job.id).run_dir))
    assert [(s["rank"], s["world_size"], s["state"]) for s in statuses] == [
        (0, 2, "done"),
        (1, 2, "done"),
    ]


# --- a rank that dies ------------------------------------------------------------------------------
def test_a_killed_rank_fails_the_job_naming_it(tiny_model_dir, orders_lines):
    store = open_store()
    job = claimed_job(
        store, orders_lines(16), str(tiny_model_dir), nproc=2, epochs=50, batch_size=2
    )
    run_dir = Path(job.run_dir)
    outcome: dict = {}

    def train() -> None:
        try:
            run_claimed(store, job.id, RUNNER)
        except TunesmithError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=train)
    thread.start()
    victim = _wait_for_training(store, job.id, run_dir)
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive()

    job = store.jobs.get(job.id)
    assert job.status == "failed" and job.error["code"] == "rank_failed"
    assert job.error["message"].startswith(f"rank 1 (pid {victim} on "), job.error
    assert "rank 1" in str(outcome["error"])
    assert store.jobs.get(job.id).worker_pid is None  # the lease was given back


def _wait_for_training(store, job_id: str, run_dir: Path, timeout: float = 120) -> int:
    """Rank 1's pid, once rank 0 has written a step's metrics (both ranks are in the loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.events.metrics(job_id):
            path = rank.status_path(run_dir, 1)
            return json.loads(path.read_text())["pid"]
        time.sleep(0.2)
    raise AssertionError((run_dir / distributed.LAUNCHER_LOG).read_text())


def test_the_failed_rank_is_the_one_with_its_own_error(tmp_path):
    def status(r: int, state: str, at: float, **extra) -> None:
        path = rank.status_path(tmp_path, r)
        path.parent.mkdir(exist_ok=True)
        record = {"rank": r, "pid": 100 + r, "host": "h", "state": state, "at": at, **extra}
        path.write_text(json.dumps(record))

    status(0, "failed", 1.0, message="gloo: connection closed", collective=True)
    status(1, "failed", 2.0, message="ValueError: bad row", collective=False)
    assert (
        distributed.failed_rank(tmp_path, 1) == "rank 1 (pid 101 on h) failed: ValueError: bad row"
    )
    status(1, "started", 0.0)  # SIGKILLed: it never wrote how it ended
    assert distributed.failed_rank(tmp_path, 1).startswith("rank 1 (pid 101 on h) died")
    (tmp_path / distributed.LAUNCHER_LOG).write_text(
        "Root Cause (first observed failure):\n  rank      : 1 (local_rank: 1)\n"
    )
    status(0, "started", 0.0)
    assert distributed.failed_rank(tmp_path, -9).startswith("rank 1 ")


# --- the launch command ----------------------------------------------------------------------------
def test_nproc_launches_torchrun_standalone_on_one_machine():
    cmd = distributed.launch_command(SFTConfig(nproc=2), "ftjob-1", python="py")
    assert cmd == [
        "py",
        *("-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"),
        *("-m", "tunesmith.train.rank", "ftjob-1"),
    ]


def test_many_machines_take_torchruns_own_options():
    config = SFTConfig(nproc=8, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29400)
    cmd = distributed.launch_command(config, "ftjob-1", python="py")
    assert " ".join(cmd) == (
        "py -m torch.distributed.run --nproc-per-node 8 --nnodes 2 --node-rank 1 "
        "--master-addr 10.0.0.1 --master-port 29400 -m tunesmith.train.rank ftjob-1"
    )
    assert config.world_size == 16
    with pytest.raises(ValueError, match="node_rank 2 must be below nnodes 2"):
        SFTConfig(nnodes=2, node_rank=2)


def test_accelerate_configs_resolve_to_trls_files_or_the_users(tmp_path):
    import trl

    shipped = Path(trl.__file__).parent / "accelerate_configs"
    for name in ("multi_gpu", "zero1", "zero2", "zero3", "fsdp1", "fsdp2"):
        assert distributed.accelerate_config_path(name) == shipped / f"{name}.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: MULTI_GPU\n")
    assert distributed.accelerate_config_path(str(own)) == own
    with pytest.raises(TunesmithError, match="neither one of TRL's accelerate configs"):
        load_config(overrides={"accelerate_config": "zero4"})

    config = SFTConfig(nproc=2, accelerate_config="fsdp2")
    cmd = distributed.launch_command(config, "ftjob-1", python="py")
    assert cmd[:5] == [
        "py",
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(shipped / "fsdp2.yaml"),
    ]
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert distributed.needs_gpu(config) and not distributed.needs_gpu(SFTConfig(nproc=2))
    assert distributed.needs_gpu(SFTConfig(accelerate_config="multi_gpu"))


def test_fsdp_on_a_cpu_fails_the_job_clearly(orders_lines, tiny_model_dir):
    store = open_store()
    job = claimed_job(
        store, orders_lines(10), str(tiny_model_dir), accelerate_config="zero2", device="cpu"
    )
    with pytest.raises(TunesmithError, match="needs GPUs"):
        run_claimed(store, job.id, RUNNER)
    assert store.jobs.get(job.id).error["code"] == "gpu_required"


def test_batches_split_evenly_over_ranks_and_accumulation():
    resolved = resolve(SFTConfig(nproc=2, gradient_accumulation_steps=2, batch_size=8), 64)
    assert (resolved.batch_size, resolved.micro_batch_size) == (8, 2)
    assert resolve(SFTConfig(nproc=4), 64).batch_size == 4  # auto (2) rounded up to the ranks
    with pytest.raises(TunesmithError, match="multiple of 4"):
        resolve(SFTConfig(nproc=2, gradient_accumulation_steps=2, batch_size=6), 64)
    with pytest.raises(TunesmithError, match="train method sft only"):
        load_config(overrides={"method": "dpo", "nproc": 2})


def test_print_command_shows_the_launch():
    from tunesmith.cli import app

    result = CliRunner().invoke(app, ["train", "--nproc", "2", "--print-command"])
    assert result.exit_code == 0, result.output
    assert "torch.distributed.run --nproc-per-node 2 --standalone" in result.output
    assert "tunesmith.train.rank JOB_ID" in result.output


def test_api_jobs_take_the_same_settings_in_config():
    """`extra_body={"config": {"nproc": 2, ...}}`: the worker's run_claimed then supervises it."""
    from tunesmith.api.protocol.fine_tuning import CreateFineTuningJob, Hyperparameters
    from tunesmith.api.routes.fine_tuning import to_config

    def body(config: dict) -> CreateFineTuningJob:
        return CreateFineTuningJob.model_validate(
            {"model": DEFAULT_MODEL, "training_file": "file-x", "config": config}
        )

    config = to_config(body({"nproc": 2, "accelerate_config": "zero2"}), Hyperparameters())
    assert (config.nproc, config.accelerate_config) == (2, "zero2")
    assert distributed.is_distributed(config)
    with pytest.raises(TunesmithError, match="not one of TRL's accelerate configs") as caught:
        to_config(body({"accelerate_config": "/etc/some.yaml"}), Hyperparameters())
    assert caught.value.param == "config.accelerate_config"


def test_another_machine_prints_its_own_line_of_a_jobs_run(tiny_model_dir, orders_lines):
    from tunesmith.cli import app

    store = open_store()
    settings = {"nproc": 4, "nnodes": 2, "master_addr": "10.0.0.1"}
    job = claimed_job(store, orders_lines(10), str(tiny_model_dir), **settings)
    args = ["train", "--resume", job.id, "--node-rank", "1", "--print-command"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        "--nproc-per-node 4 --nnodes 2 --node-rank 1 --master-addr 10.0.0.1 --master-port 29500 "
        f"-m tunesmith.train.rank {job.id}"
    ) in result.output
