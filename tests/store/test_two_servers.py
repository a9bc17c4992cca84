"""Two `tunesmith serve` processes, one PostgreSQL store and one home folder: eight jobs
submitted across both run once each, and killing one server hands its running job to the
other's recovery, which trains it to the end without a second runner."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tunesmith.store import Store

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "tunesmith")
ORDERS = Path(__file__).resolve().parents[2] / "src/tunesmith/tasks/orders/train.jsonl"
DEADLINE_S = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(home: Path, url: str, model_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "TUNESMITH_HOME": str(home), "TUNESMITH_DATABASE_URL": url}
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port), "--workers", "1", "--model-dir", str(model_dir)],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: killing it kills its worker too
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise TimeoutError(f"tunesmith serve did not start:\n{log.read_text()[-3000:]}")


def test_two_servers_share_one_queue_and_recover_a_killed_ones_job(
    postgres_url, tunesmith_home, tiny_model_dir, tmp_path
):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(ORDERS.read_text().splitlines()[:10]) + "\n")
    servers = [
        start_server(tunesmith_home, postgres_url, tiny_model_dir, tmp_path / f"serve-{i}.log")
        for i in range(2)
    ]
    try:
        jobs = []
        for i in range(8):  # alternately through each server's API
            base = servers[i % 2][1]
            with data.open("rb") as f:
                file_id = httpx.post(
                    f"{base}/files", files={"file": ("t.jsonl", f)}, data={"purpose": "fine-tune"}
                ).json()["id"]
            made = httpx.post(
                f"{base}/fine_tuning/jobs",
                json={"model": str(tiny_model_dir), "training_file": file_id,
                      "hyperparameters": {"n_epochs": 2, "batch_size": 1}},
                timeout=30,
            )  # fmt: skip
            assert made.status_code == 200, made.text
            jobs.append(made.json()["id"])

        store = Store(postgres_url)
        # Wait until the first server's worker runs a job, then kill that server and its worker.
        victim_pid = servers[0][0].pid
        deadline = time.monotonic() + DEADLINE_S
        while True:
            running = [
                j for j in map(store.jobs.get, jobs) if j.status == "running" and j.worker_pid
            ]
            mine = [j for j in running if _child_of(j.worker_pid, victim_pid)]
            if mine:
                killed = mine[0]
                break
            assert time.monotonic() < deadline, "the first server never ran a job"
            time.sleep(0.2)
        os.killpg(servers[0][0].pid, signal.SIGKILL)
        servers[0][0].wait(timeout=30)

        # The other server's recovery requeues the killed job and trains everything to the end.
        while not all(store.jobs.get(j).status == "succeeded" for j in jobs):
            failed = [j for j in jobs if store.jobs.get(j).status in ("failed", "cancelled")]
            assert not failed, [store.jobs.get(j).error for j in failed]
            assert time.monotonic() < deadline, [store.jobs.get(j).status for j in jobs]
            time.sleep(0.5)
        rows = [store.jobs.get(j) for j in jobs]
        assert all(r.fine_tuned_model for r in rows)
        assert len({r.fine_tuned_model for r in rows}) == 8  # one model per job, none twice
        registered = [m for m in store.models.list() if m.name.startswith("ft:")]
        assert sorted(r.fine_tuned_model for r in rows) == sorted(
            m.name for m in registered if ":ckpt-" not in m.name
        )
        starting = ("Fine-tuning job started", "Fine-tuning job resumed")
        for row in rows:  # one run to the end each; the killed job's after its recovery
            events = [e.message for e in store.events.since(row.id)]
            if row.id == killed.id:
                recovered = [i for i, m in enumerate(events) if "stopped; it continues from" in m]
                assert len(recovered) == 1, events  # killed mid-run (maybe before its first step)
                events = events[recovered[0] :]
            assert sum(m.startswith(starting) for m in events) == 1, events
            assert sum(m == "The job has successfully completed" for m in events) == 1, events
        assert store.jobs.get(killed.id).attempts == 1
        store.close()
    finally:
        for process, _ in servers:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


def _child_of(pid: int, parent: int) -> bool:
    """Whether `pid` is `parent` or one of its descendants (a server's worker process)."""
    while pid > 1:
        if pid == parent:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False
