"""Kill tests: SIGKILL the training child, then the server, at random points of running jobs,
restart each time, and finish with a store consistency check (jobs.recovery.audit).

The server is a real `tunesmith serve` process; the jobs train the tiny model over several epochs,
so each has checkpoints to continue from. The kill points come from a fixed seed.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import psutil
import pytest

from tunesmith.jobs.recovery import audit
from tunesmith.store import open_store

pytestmark = pytest.mark.slow
SEED = 20261201
ROUNDS = 4  # kills in all: children and servers alternate (each twice), in a seeded order
CLI = Path(sys.executable).parent / "tunesmith"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`tunesmith serve` in its own process, on a fixed port across restarts."""

    def __init__(self, model_dir: Path) -> None:
        self.port = _free_port()
        self.model_dir = model_dir
        self.process: subprocess.Popen | None = None
        self.sdk = openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.port}/v1", api_key="k", max_retries=0, timeout=30
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(CLI), "serve", "--port", str(self.port), "--workers", "1",
             "--model-dir", str(self.model_dir)],
            env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                self.sdk.models.list()
                return
            except openai.APIConnectionError:
                assert self.process.poll() is None, self.process.stderr.read().decode()
                time.sleep(0.2)
        raise TimeoutError("the server did not start")

    def worker(self) -> psutil.Process | None:
        assert self.process is not None
        children = psutil.Process(self.process.pid).children(recursive=True)
        trainers = [c for c in children if _holds_a_job(c.pid)]
        return trainers[0] if trainers else None

    def kill(self) -> None:
        """SIGKILL the server; its children (worker, validator) must not outlive it."""
        assert self.process is not None
        children = psutil.Process(self.process.pid).children(recursive=True)
        self.process.kill()
        self.process.wait(timeout=30)
        _, alive = psutil.wait_procs(children, timeout=60)  # a worker first ends its step
        assert alive == [], f"orphaned children: {alive}"

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)  # a clean shutdown: workers requeue their jobs
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def _holds_a_job(pid: int) -> bool:
    store = open_store()
    try:
        return any(job.worker_pid == pid for job in store.jobs.held())
    finally:
        store.close()


def _wait_until_settled(server: Server, timeout: float = 600) -> None:
    """Until no job is validating, queued or running (every one ended or paused)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = {j.status for j in server.sdk.fine_tuning.jobs.list(limit=100)}
        if not statuses & {"validating_files", "queued", "running"}:
            return
        time.sleep(0.5)
    raise TimeoutError(f"jobs did not settle: {statuses}")


def test_kills_at_random_points_leave_a_consistent_store(tiny_model_dir, orders, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join((orders / "train.jsonl").read_text().splitlines(keepends=True)[:12]))
    rng = random.Random(SEED)
    server = Server(tiny_model_dir)
    server.start()
    try:
        file = server.sdk.files.create(file=data, purpose="fine-tune")
        method = {
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 8, "batch_size": 4}},
        }
        jobs = [
            server.sdk.fine_tuning.jobs.create(
                training_file=file.id, model=str(tiny_model_dir), method=method, suffix=f"k{i}"
            ).id
            for i in range(3)
        ]
        kills = {"child": 0, "server": 0}
        for round_ in range(ROUNDS):
            victim = "child" if round_ % 2 == 0 else "server"
            deadline = time.monotonic() + 120
            while (worker := server.worker()) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if worker is None:
                break  # every job has ended
            time.sleep(rng.uniform(0.3, 2.5))  # a random point of the run
            if victim == "child":
                worker.kill()
            else:
                server.kill()
                server.start()
            kills[victim] += 1
        _wait_until_settled(server)
    finally:
        server.stop()

    store = open_store()
    assert audit(store) == []
    for job_id in jobs:
        job = store.jobs.get(job_id)
        resumable = job.status == "paused" or (
            job.status == "cancelled" and store.checkpoints.latest(job_id) is not None
        )
        assert job.status in ("succeeded", "failed") or resumable, job
        if job.status == "succeeded":
            assert store.models.get(job.fine_tuned_model) is not None
    succeeded = sum(store.jobs.get(j).status == "succeeded" for j in jobs)
    print(f"\nkill test: {kills['child']} training children and {kills['server']} servers "
          f"SIGKILLed; {succeeded}/{len(jobs)} jobs succeeded; audit clean")  # fmt: skip
    assert kills["child"] >= 2 and kills["server"] >= 2
