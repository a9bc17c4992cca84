"""Leases across hosts: a runner's heartbeat renews its lease; recovery takes a job from a runner
on another host only once its lease ran out, never while it beats. On both backends."""

from __future__ import annotations

import socket
import time

import pytest

from tunesmith.jobs.recovery import gone, reclaim, recover
from tunesmith.store import Store, open_store
from tunesmith.store.lifecycle import Runner, lease_expired

pytestmark = pytest.mark.usefixtures("backend")
METHOD = {"type": "supervised", "supervised": {"hyperparameters": {}}}
ELSEWHERE = Runner(4242, "another-host")  # a pid that means nothing here


@pytest.fixture
def store() -> Store:
    opened = open_store()
    yield opened
    opened.close()


def running_job(store: Store, runner: Runner = ELSEWHERE) -> str:
    job = store.jobs.create(
        model="smollm2-135m-instruct", training_file="file-t", validation_file=None,
        suffix=None, seed=1, metadata=None, method=METHOD, config={},
    )  # fmt: skip
    store.jobs.move(job.id, "queued")
    return store.jobs.claim(job.id, runner, only_from={"queued"}).id


def age(store: Store, table: str, row_id: str, seconds: int | None) -> None:
    """Pretend the row's runner last beat `seconds` ago (None: never)."""
    beat = None if seconds is None else int(time.time()) - seconds
    store.execute(f"UPDATE {table} SET heartbeat_at = ? WHERE id = ?", [beat, row_id])


def test_a_claim_starts_the_lease_and_a_release_ends_it(store):
    job_id = running_job(store)
    job = store.jobs.get(job_id)
    assert abs(job.heartbeat_at - time.time()) < 5
    assert store.jobs.release(job_id, ELSEWHERE)
    assert store.jobs.get(job_id).heartbeat_at is None


def test_only_the_holder_can_beat(store):
    job_id = running_job(store)
    age(store, "jobs", job_id, 100)
    assert store.jobs.beat(job_id, Runner(1, "someone-else")) is False
    assert store.jobs.get(job_id).heartbeat_at < time.time() - 50
    assert store.jobs.beat(job_id, ELSEWHERE) is True
    assert store.jobs.get(job_id).heartbeat_at >= int(time.time()) - 1


def test_the_heartbeat_thread_renews_the_lease_and_notices_losing_it(store):
    job_id = running_job(store)
    age(store, "jobs", job_id, 100)
    with store.jobs.lifecycle.heartbeat(job_id, ELSEWHERE, every=0.05) as beating:
        deadline = time.monotonic() + 10
        while store.jobs.get(job_id).heartbeat_at < time.time() - 50:
            assert time.monotonic() < deadline, "the heartbeat never renewed the lease"
            time.sleep(0.02)
        assert beating.lost is False
        store.jobs.release(job_id, ELSEWHERE)  # as recovery elsewhere would
        while not beating.lost:
            assert time.monotonic() < deadline, "the heartbeat never noticed the lost lease"
            time.sleep(0.02)
    assert not beating.is_alive()


def test_a_lease_this_process_took_is_renewed_until_it_is_given_back(monkeypatch):
    """Whatever code runs the job or task (a worker, `tunesmith train`, a comparison), a claim
    for this process itself keeps beating until its release."""
    monkeypatch.setenv("TUNESMITH_LEASE_SECONDS", "1")  # a beat every quarter second
    store, me = open_store(), Runner.here()
    try:
        job_id = running_job(store, me)
        task_id = store.exports.create({}).id
        assert store.exports.claim_next(me).id == task_id
        for table, row_id in (("jobs", job_id), ("exports", task_id)):
            age(store, table, row_id, 100)
        deadline = time.monotonic() + 20
        while any(
            repo.get(row_id).heartbeat_at < time.time() - 50
            for repo, row_id in ((store.jobs, job_id), (store.exports, task_id))
        ):
            assert time.monotonic() < deadline, "a lease this process holds was not renewed"
            time.sleep(0.05)
        with store.jobs.lifecycle.heartbeat(job_id, me) as beating:
            assert beating is store.jobs.lifecycle._beating[job_id]  # the claim's, not a second
        assert store.jobs.release(job_id, me) and store.exports.release(task_id, me)
        assert not store.jobs.lifecycle._beating and not store.exports.lifecycle._beating
    finally:
        store.close()


def test_a_stale_lease_on_another_host_is_recovered(store):
    job_id = running_job(store)
    age(store, "jobs", job_id, store.settings.lease_seconds + 5)
    assert reclaim(store) == 1
    job = store.jobs.get(job_id)
    assert (job.status, job.worker_pid, job.runner_host, job.attempts) == ("queued", None, None, 1)
    assert "another-host" in store.events.list(job_id).data[0].message


def test_a_fresh_lease_on_another_host_is_left_alone(store):
    job_id = running_job(store)
    age(store, "jobs", job_id, store.settings.lease_seconds // 2)
    assert recover(store) == [] and reclaim(store) == 0
    job = store.jobs.get(job_id)
    assert (job.status, job.worker_pid, job.runner_host) == ("running", 4242, "another-host")


def test_a_lease_without_any_heartbeat_is_never_taken(store):
    """A row claimed before heartbeats existed: better left held than run twice."""
    job_id = running_job(store)
    age(store, "jobs", job_id, None)
    assert reclaim(store) == 0
    assert store.jobs.get(job_id).status == "running"


def test_on_this_host_a_dead_pid_is_dead_however_fresh_its_lease(store):
    here = socket.gethostname()
    job_id = running_job(store, Runner(2**22 + 12345, here))  # above pid_max: never alive
    assert reclaim(store) == 1
    assert store.jobs.get(job_id).status == "queued"


@pytest.mark.parametrize("kind", ["comparisons", "exports"])
def test_tasks_hold_leases_the_same_way(store, kind):
    tasks = store.tasks[kind]
    stale, fresh = (tasks.create({"n": n}).id for n in (1, 2))
    assert {tasks.claim_next(ELSEWHERE).id, tasks.claim_next(ELSEWHERE).id} == {stale, fresh}
    age(store, kind, stale, store.settings.lease_seconds + 5)
    assert tasks.beat(fresh, ELSEWHERE) is True
    assert reclaim(store) == 1
    assert (tasks.get(stale).status, tasks.get(stale).worker_pid) == ("queued", None)
    assert (tasks.get(fresh).status, tasks.get(fresh).worker_pid) == ("running", 4242)


def test_lease_arithmetic():
    assert lease_expired(100, 60, now=161) and not lease_expired(100, 60, now=160)
    assert not lease_expired(None, 60, now=10**12)
    assert not gone(ELSEWHERE)  # no lease given: another host's runner is never known dead
    assert gone(ELSEWHERE, heartbeat_at=0, lease_seconds=60)
    assert not gone(None, heartbeat_at=0, lease_seconds=60)


def test_workers_look_for_dead_runners_now_and_then(store, monkeypatch):
    """A worker's turn (jobs.service.run_next) first reclaims, at most every quarter lease."""
    from tunesmith.jobs import service

    monkeypatch.setattr(service, "_next_reclaim", 0.0)
    first = running_job(store)
    age(store, "jobs", first, store.settings.lease_seconds + 5)
    service._reclaim_now_and_then(store)
    assert store.jobs.get(first).status == "queued"
    second = running_job(store)
    age(store, "jobs", second, store.settings.lease_seconds + 5)
    service._reclaim_now_and_then(store)  # too soon after the last look: left for the next
    assert store.jobs.get(second).status == "running"
