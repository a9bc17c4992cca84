"""The job and comparison lifecycles: every legal move lands, every illegal one is refused by the
database's conditional UPDATE; success and registration land together; leases keep one runner."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.models.spec import ModelSpec
from tunesmith.store import Store, open_store
from tunesmith.store.lifecycle import Runner
from tunesmith.store.states import (
    JOB_FINAL,
    JOB_MOVES,
    JOB_STATUSES,
    TASK_MOVES,
    TASK_STATUSES,
)

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL (conftest.py)
METHOD = {"type": "supervised", "supervised": {"hyperparameters": {}}}
A, B = Runner(101, "host-a"), Runner(202, "host-a")


@pytest.fixture
def store() -> Store:
    opened = open_store()
    yield opened
    opened.close()


def new_job(store: Store) -> str:
    return store.jobs.create(
        model="smollm2-135m-instruct", training_file="file-t", validation_file=None,
        suffix=None, seed=1, metadata=None, method=METHOD, config={},
    ).id  # fmt: skip


def force(store: Store, table: str, row_id: str, status: str) -> None:
    """Arrange a status directly (test setup only: the code under test never writes one)."""
    store.execute(f"UPDATE {table} SET status = ? WHERE id = ?", [status, row_id])


def spec(name: str, folder: Path) -> ModelSpec:
    return ModelSpec(name=name, kind="fine-tuned", base="b", weights="b", adapter=folder)


def test_tables_name_only_known_statuses():
    assert {s for pair in JOB_MOVES for s in pair} <= set(JOB_STATUSES)
    assert {s for pair in TASK_MOVES for s in pair} <= set(TASK_STATUSES)
    # nothing leaves succeeded; every status but the start can be reached
    assert not any(src == "succeeded" for src, _ in JOB_MOVES)
    assert {dst for _, dst in JOB_MOVES} == set(JOB_STATUSES) - {"validating_files"}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(JOB_STATUSES, repeat=2)))
def test_every_job_move_lands_exactly_when_the_table_has_it(store, src, dst):
    job_id = new_job(store)
    force(store, "jobs", job_id, src)
    legal = (src, dst) in JOB_MOVES
    if legal:
        moved = store.jobs.move(job_id, dst)
        assert moved.status == dst
        assert (moved.finished_at is not None) == (dst in JOB_FINAL)
    else:
        with pytest.raises(TunesmithError) as caught:
            store.jobs.move(job_id, dst)
        assert caught.value.code == "invalid_job_state" and caught.value.status == 400
        assert store.jobs.get(job_id).status == src


@pytest.mark.parametrize("table", ["comparisons", "exports"])
@pytest.mark.parametrize(("src", "dst"), list(itertools.product(TASK_STATUSES, repeat=2)))
def test_every_task_move_lands_exactly_when_the_table_has_it(store, table, src, dst):
    tasks = store.tasks[table]
    row = tasks.create({"model": "m"})
    force(store, table, row.id, src)
    if (src, dst) in TASK_MOVES:
        assert tasks.move(row.id, dst).status == dst
    else:
        with pytest.raises(TunesmithError):
            tasks.move(row.id, dst)
        assert tasks.get(row.id).status == src


def test_a_caller_asking_for_a_move_the_table_lacks_is_a_bug(store):
    job_id = new_job(store)
    with pytest.raises(ValueError, match="no move"):
        store.jobs.move(job_id, "queued", only_from={"succeeded"})


def _race(job_id: str) -> list[bool]:
    """Cancel and succeed, each from its own connection, released at the same instant."""
    others = [open_store(), open_store()]
    barrier, results = threading.Barrier(2), []

    def attempt(own: Store, to: str) -> None:
        barrier.wait()
        results.append(own.jobs.lifecycle.move(job_id, to, only_from={"running"}))

    threads = [
        threading.Thread(target=attempt, args=(others[0], "cancelled")),
        threading.Thread(target=attempt, args=(others[1], "succeeded")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in others:
        o.close()
    return results


def test_two_racing_moves_only_one_lands(store):
    """Cancel and succeed race for a running job: the database lets exactly one through."""
    for _ in range(20):
        job_id = new_job(store)
        store.jobs.move(job_id, "queued")
        store.jobs.claim(job_id, A, only_from={"queued"})
        assert sorted(_race(job_id)) == [False, True]


def test_success_and_registration_land_together(store, tmp_path):
    job_id = new_job(store)
    store.jobs.move(job_id, "queued")
    store.jobs.claim(job_id, A, only_from={"queued"})
    store.jobs.move(job_id, "cancelled")  # a cancel during the final save
    with pytest.raises(TunesmithError) as caught:
        store.jobs.succeed(job_id, spec("ft:m:local::1", tmp_path))
    assert caught.value.code == "invalid_job_state"
    assert store.models.get("ft:m:local::1") is None  # no callable final model
    assert store.jobs.get(job_id).status == "cancelled"

    store.jobs.release(job_id, A)
    store.jobs.claim(job_id, B, only_from={"cancelled"})  # `train --resume`
    done = store.jobs.succeed(job_id, spec("ft:m:local::1", tmp_path), trained_tokens=5)
    assert (done.status, done.trained_tokens) == ("succeeded", 5)
    assert store.models.get("ft:m:local::1").adapter == tmp_path


def test_registration_is_idempotent(store, tmp_path):
    """A resumed or recovered run registers its model (or checkpoint) again: not an error."""
    job_id = new_job(store)
    first, second = tmp_path / "a", tmp_path / "b"
    store.models.register(spec("ft:m:local::2", first), job_id)
    store.models.register(spec("ft:m:local::2", second), job_id)
    assert store.models.get("ft:m:local::2").adapter == second
    ckpt = spec("ft:m:local::2:ckpt-step-4", first)
    store.checkpoints.register(job_id, 4, ckpt, {"step": 4})
    store.checkpoints.register(job_id, 4, ckpt, {"step": 4})
    assert len(store.checkpoints.list(job_id).data) == 1


def test_a_held_job_cannot_be_claimed_by_another_runner(store):
    """A cancelled job whose runner has not stopped yet cannot be resumed elsewhere; a CLI job
    claimed at validation is never queued, so no worker can take it."""
    job_id = new_job(store)
    store.jobs.claim(job_id, A, only_from={"validating_files"})
    assert store.jobs.claim_next(B) is None
    store.jobs.move(job_id, "cancelled")
    with pytest.raises(TunesmithError, match="pid 101"):
        store.jobs.claim(job_id, B, only_from={"cancelled"})
    assert not store.jobs.release(job_id, B)  # only the holder gives it back
    assert store.jobs.release(job_id, A)
    assert store.jobs.claim(job_id, B, only_from={"cancelled"}).runner == B
