"""PostgreSQL as the store (TUNESMITH_DATABASE_URL): the dialect's translations, migrations run by
many processes at once, and claims by concurrent workers through `FOR UPDATE SKIP LOCKED`. The
store's whole test module runs on PostgreSQL too (test_store.py, through conftest's `backend`)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from tunesmith.settings import Settings
from tunesmith.store import Store, open_store
from tunesmith.store.dialect import POSTGRES, SQLITE, Row, dialect_for
from tunesmith.store.lifecycle import Runner
from tunesmith.store.migrations import MIGRATIONS

METHOD = {"type": "supervised", "supervised": {"hyperparameters": {}}}


def queued_job(store: Store) -> str:
    job = store.jobs.create(
        model="smollm2-135m-instruct", training_file="file-t", validation_file=None,
        suffix=None, seed=1, metadata=None, method=METHOD, config={},
    )  # fmt: skip
    return store.jobs.move(job.id, "queued").id


# --- the dialect, without a server ----------------------------------------------------------------
def test_the_url_picks_the_backend():
    assert dialect_for("postgresql://u@h/db") is POSTGRES
    assert dialect_for("postgres://u@h/db") is POSTGRES
    assert dialect_for(Path("/home/x/tunesmith.db")) is SQLITE
    assert Settings(database_url="postgresql://u@h/db").database_url == "postgresql://u@h/db"
    assert Settings(database_url="").database_url is None  # empty is unset: SQLite
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings(database_url="mysql://u@h/db")


def test_postgres_sql_is_the_same_sql_with_its_placeholders():
    assert POSTGRES.sql("SELECT * FROM t WHERE a = ? AND b LIKE 'x%'") == (
        "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%'"
    )
    ddl = POSTGRES.ddl("CREATE TABLE t (seq INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER)")
    assert ddl == "CREATE TABLE t (seq BIGSERIAL PRIMARY KEY, n BIGINT)"
    assert SQLITE.ddl(MIGRATIONS[0]) == MIGRATIONS[0]  # SQLite runs the migrations as written


def test_a_postgres_row_reads_like_a_sqlite_row():
    row = Row(["id", "n"], ("a", 1))
    assert (row["id"], row[1], dict(row)) == ("a", 1, {"id": "a", "n": 1})


# --- a real server --------------------------------------------------------------------------------
def test_open_store_follows_the_database_url(postgres_url, monkeypatch, tunesmith_home):
    monkeypatch.setenv("TUNESMITH_DATABASE_URL", postgres_url)
    store = open_store()
    try:
        assert store.dialect is POSTGRES and store.path is None
        job_id = queued_job(store)
        assert not (tunesmith_home / "tunesmith.db").exists()  # nothing went to SQLite
        big = 5 * 1024**3  # 64-bit columns: a byte count past 2**31
        store.jobs.update(job_id, trained_tokens=big)
        assert store.jobs.get(job_id).trained_tokens == big
    finally:
        store.close()


def test_migrations_are_idempotent_on_postgres(postgres_url):
    first = Store(postgres_url)
    before = first.query("SELECT version, applied_at FROM migrations ORDER BY version")
    first.close()
    for _ in range(2):
        again = Store(postgres_url)
        assert again.query("SELECT version, applied_at FROM migrations ORDER BY version") == before
        again.close()
    assert [r["version"] for r in before] == list(range(1, len(MIGRATIONS) + 1))


def test_a_fresh_database_opened_by_several_processes_at_once_migrates_once(postgres_server):
    """Without the advisory lock, two `CREATE TABLE IF NOT EXISTS migrations` (or two of the same
    migration) at once collide in PostgreSQL's catalog."""
    import psycopg

    for trial in range(5):
        schema = f"race_{trial}_{time.monotonic_ns()}"
        with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url, errors, start = postgres_server.url(schema), [], threading.Barrier(6)
        threads = [threading.Thread(target=open_at, args=(url, start, errors)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        store = Store(url)
        versions = [r["version"] for r in store.query("SELECT version FROM migrations")]
        store.close()
        assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))


def open_at(url: str, start: threading.Barrier, errors: list[str]) -> None:
    """Open (and so migrate) a store the moment every other thread does."""
    start.wait()
    try:
        Store(url).close()
    except Exception as exc:
        errors.append(repr(exc))


def test_a_claim_skips_a_row_another_transaction_holds_instead_of_waiting(postgres_url):
    """SKIP LOCKED itself: while another connection holds the oldest queued job's row lock
    (a claim in flight), a claim takes the next job at once."""
    import psycopg

    store = Store(postgres_url)
    first, second = queued_job(store), queued_job(store)
    holder = psycopg.connect(postgres_url)  # not autocommit: its lock lasts until rollback
    try:
        holder.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", [first])
        claimed: list[str | None] = []
        claim = threading.Thread(
            target=lambda: claimed.append(
                getattr(store.jobs.claim_next(Runner(7, "h")), "id", None)
            )
        )
        claim.start()
        claim.join(timeout=10)
        waited = claim.is_alive()
        holder.rollback()  # lets a claim that waited on the row go on, so the test can end
        claim.join()
        assert not waited, "the claim waited on a row another transaction holds"
        assert claimed == [second]
        assert store.jobs.claim_next(Runner(7, "host-b")).id == first
        assert store.jobs.claim_next(Runner(7, "host-b")) is None
    finally:
        holder.close()
        store.close()


CLAIMER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from tunesmith.store import Store
    from tunesmith.store.lifecycle import Runner

    url, go, host = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    store = Store(url)  # connected and migrated before the start line
    while not go.exists():
        time.sleep(0.01)
    runner, claimed = Runner(os.getpid(), host), []
    while (job := store.jobs.claim_next(runner)) is not None:
        claimed.append(job.id)
        time.sleep(0.01)  # a little work, so the others' claims interleave with ours
    print(json.dumps(claimed))
    """
)


def test_worker_processes_on_several_hosts_claim_every_job_exactly_once(postgres_url, tmp_path):
    """Four processes (two "hosts" each with two workers) drain one queue over real, concurrent
    connections: every job is claimed once, by the process its row names."""
    store = Store(postgres_url)
    queued = [queued_job(store) for _ in range(60)]
    go = tmp_path / "go"
    hosts = ["host-a", "host-a", "host-b", "host-b"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, postgres_url, str(go), host],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for host in hosts
    ]
    try:
        time.sleep(0.5)
        go.touch()
        results = [p.communicate(timeout=120) for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert [p.returncode for p in processes] == [0] * 4, [err for _, err in results]
    per_process = [json.loads(out) for out, _ in results]
    claimed = [job_id for ids in per_process for job_id in ids]
    assert sorted(claimed) == sorted(queued)  # every job once, none twice
    assert sum(1 for ids in per_process if ids) >= 2, "the claims never overlapped"
    for process, host, ids in zip(processes, hosts, per_process, strict=True):
        for job_id in ids:
            job = store.jobs.get(job_id)
            assert (job.status, job.worker_pid, job.runner_host) == ("running", process.pid, host)
            assert job.heartbeat_at is not None
    store.close()


def test_the_store_comes_back_after_postgres_drops_its_connection(postgres_url, postgres_server):
    """What a server restart or failover does to a client, done to this store's connection
    alone (`pg_terminate_backend`)."""
    import psycopg

    from tunesmith.errors import TunesmithError
    from tunesmith.store.dialect import PostgresConnection

    def drop(store: Store) -> int:
        (row,) = store.query("SELECT pg_backend_pid() AS pid")
        with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [row["pid"]])
        return row["pid"]

    store = Store(postgres_url)
    try:
        job_id = queued_job(store)
        # dropped while idle: past the idle time, the next statement finds it out and reconnects
        first = drop(store)
        time.sleep(PostgresConnection.PING_AFTER_SECONDS + 0.2)
        assert store.jobs.get(job_id).status == "queued"
        assert store.query("SELECT pg_backend_pid() AS pid")[0]["pid"] != first
        # dropped just before a statement that is sent: it fails, unsent again, with a 503...
        drop(store)
        with pytest.raises(TunesmithError) as lost:
            store.execute("UPDATE jobs SET suffix = ? WHERE id = ?", ["x", job_id])
        assert lost.value.status == 503 and "Retry" in (lost.value.hint or "")
        # ...and the next one runs on a new connection
        assert store.execute("UPDATE jobs SET suffix = ? WHERE id = ?", ["y", job_id]) == 1
        assert store.jobs.get(job_id).suffix == "y"
    finally:
        store.close()
