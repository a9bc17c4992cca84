"""A comparison run by a worker: a cancel is obeyed even while --train-now trains, and it frees
the lease."""

from __future__ import annotations

import pytest

from tunesmith.evals.queued import run_queued_comparison
from tunesmith.store import open_store
from tunesmith.store.lifecycle import Runner


@pytest.mark.parametrize("stop", ["cancel", "worker stopping"])
def test_a_stop_is_obeyed_while_train_now_trains(tiny_model_dir, orders, tmp_path, stop):
    """A cancel through the API, or SIGTERM to the worker, stops --train-now at its next step;
    a cancelled comparison stays cancelled, one whose worker stops runs again later."""
    store = open_store()
    train = tmp_path / "train.jsonl"
    train.write_text("".join((orders / "train.jsonl").read_text().splitlines(keepends=True)[:40]))
    row = store.comparisons.create(
        {"train": str(train), "test": str(orders / "test.jsonl"), "model": str(tiny_model_dir),
         "train_now": True, "probes": False, "limit": 2, "max_tokens": 4},
    )  # fmt: skip
    runner = Runner(12345, "host")
    row = store.comparisons.claim_next(runner)
    if stop == "cancel":
        store.comparisons.move(row.id, "cancelled")  # as POST /comparisons/{id}/cancel does

    run_queued_comparison(store, row, runner, lambda: stop == "worker stopping")

    done = store.comparisons.get(row.id)
    expected = "cancelled" if stop == "cancel" else "queued"
    assert (done.status, done.worker_pid, done.attempts) == (expected, None, 0)
    (job,) = store.jobs.list().data
    # The train-now job stopped at its first step boundary, not after its whole run.
    steps = [m["step"] for m in store.events.metrics(job.id)]
    assert job.status == "cancelled" and steps == [1], steps
    assert job.worker_pid is None
