"""A comparison run by a worker: a cancel is obeyed even while --train-now trains, and it frees
the lease."""

from __future__ import annotations

from tunesmith.evals.queued import run_queued_comparison
from tunesmith.store import open_store
from tunesmith.store.lifecycle import Runner


def test_a_cancel_stops_train_now_at_its_next_step(tiny_model_dir, orders, tmp_path):
    store = open_store()
    train = tmp_path / "train.jsonl"
    train.write_text("".join((orders / "train.jsonl").read_text().splitlines(keepends=True)[:40]))
    row = store.comparisons.create(
        {"train": str(train), "test": str(orders / "test.jsonl"), "model": str(tiny_model_dir),
         "train_now": True, "probes": False, "limit": 2, "max_tokens": 4},
    )  # fmt: skip
    runner = Runner(12345, "host")
    row = store.comparisons.claim_next(runner)
    store.comparisons.move(row.id, "cancelled")  # as POST /comparisons/{id}/cancel does

    run_queued_comparison(store, row, runner, lambda: False)

    done = store.comparisons.get(row.id)
    assert (done.status, done.worker_pid) == ("cancelled", None)
    (job,) = store.jobs.list().data
    # The train-now job stopped at its first step boundary, not after its whole run.
    steps = [m["step"] for m in store.events.metrics(job.id)]
    assert job.status == "cancelled" and steps == [1], steps
    assert job.worker_pid is None
