"""Numbered schema migrations, recorded in a table so old stores grow without breaking.

One list serves SQLite and PostgreSQL. The SQL is plain; the two words PostgreSQL reads
differently (AUTOINCREMENT keys and 64-bit INTEGER) are translated by `Dialect.ddl`, never forked.
"""

from __future__ import annotations

import time

from tunesmith.store.dialect import SQLITE, Connection, Dialect

MIGRATIONS: list[str] = [
    # 1: the first schema.
    """
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        filename TEXT NOT NULL,
        purpose TEXT NOT NULL,
        path TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'processed',
        expires_at INTEGER
    );
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT UNIQUE NOT NULL,
        created_at INTEGER NOT NULL,
        model TEXT NOT NULL,
        training_file TEXT NOT NULL,
        validation_file TEXT,
        suffix TEXT,
        seed INTEGER NOT NULL,
        metadata TEXT,
        method TEXT NOT NULL,
        config TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        fine_tuned_model TEXT,
        finished_at INTEGER,
        trained_tokens INTEGER,
        result_files TEXT NOT NULL DEFAULT '[]',
        estimated_finish INTEGER,
        run_dir TEXT NOT NULL,
        data_hash TEXT,
        worker_pid INTEGER,
        control TEXT
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT UNIQUE NOT NULL,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        created_at INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        type TEXT NOT NULL,
        data TEXT
    );
    CREATE INDEX events_job ON events(job_id, seq);
    CREATE TABLE checkpoints (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT UNIQUE NOT NULL,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        created_at INTEGER NOT NULL,
        step_number INTEGER NOT NULL,
        model_name TEXT NOT NULL,
        path TEXT NOT NULL,
        metrics TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX checkpoints_job ON checkpoints(job_id, seq);
    CREATE TABLE models (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        base TEXT NOT NULL,
        weights TEXT NOT NULL,
        adapter TEXT,
        job_id TEXT,
        created INTEGER NOT NULL,
        owned_by TEXT NOT NULL
    );
    """,
    # 2: comparisons (`tunesmith compare` run as a job) and their events.
    """
    CREATE TABLE comparisons (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT UNIQUE NOT NULL,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        config TEXT NOT NULL,
        result TEXT,
        error TEXT,
        finished_at INTEGER,
        out_dir TEXT NOT NULL,
        worker_pid INTEGER
    );
    CREATE TABLE comparison_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT UNIQUE NOT NULL,
        comparison_id TEXT NOT NULL REFERENCES comparisons(id),
        created_at INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT
    );
    CREATE INDEX comparison_events_by_id ON comparison_events(comparison_id, seq);
    """,
    # 3: who runs a job or comparison is a lease of (host, pid); crashes are counted, so a job
    # that kills its worker (out of memory) is retried a few times, not forever.
    """
    ALTER TABLE jobs ADD COLUMN runner_host TEXT;
    ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE comparisons ADD COLUMN runner_host TEXT;
    ALTER TABLE comparisons ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: exports (`tunesmith export` through the API) run as background tasks, like comparisons.
    """
    CREATE TABLE exports (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT UNIQUE NOT NULL,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        config TEXT NOT NULL,
        result TEXT,
        error TEXT,
        finished_at INTEGER,
        out_dir TEXT NOT NULL,
        worker_pid INTEGER,
        runner_host TEXT,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE export_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT UNIQUE NOT NULL,
        export_id TEXT NOT NULL REFERENCES exports(id),
        created_at INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT
    );
    CREATE INDEX export_events_by_id ON export_events(export_id, seq);
    """,
    # 5: deployments (Azure's word): a stable name that calls a model or a checkpoint.
    """
    CREATE TABLE deployments (
        name TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        sku TEXT NOT NULL,
        properties TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX deployments_by_model ON deployments(model);
    """,
    # 6: a runner's lease is renewed by a heartbeat, so a host can tell a job that another host
    # is still running from one whose runner died there (its pid means nothing here).
    """
    ALTER TABLE jobs ADD COLUMN heartbeat_at INTEGER;
    ALTER TABLE comparisons ADD COLUMN heartbeat_at INTEGER;
    ALTER TABLE exports ADD COLUMN heartbeat_at INTEGER;
    """,
]


def migrate(conn: Connection, dialect: Dialect = SQLITE) -> None:
    """Apply every migration not yet recorded, each in its own transaction."""
    with dialect.migrating(conn):
        conn.execute(
            dialect.ddl(
                "CREATE TABLE IF NOT EXISTS migrations "
                "(version INTEGER PRIMARY KEY, applied_at INTEGER)"
            )
        )
        done = {row[0] for row in conn.execute("SELECT version FROM migrations").fetchall()}
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version not in done:
                _apply(conn, dialect, version, sql)


def _apply(conn: Connection, dialect: Dialect, version: int, sql: str) -> None:
    # executescript would commit on its own; run each statement inside one transaction.
    conn.execute(dialect.begin)
    # Another process may have applied it between our read and our lock.
    if conn.execute("SELECT 1 FROM migrations WHERE version = ?", [version]).fetchone():
        conn.execute("ROLLBACK")
        return
    try:
        for statement in filter(str.strip, sql.split(";")):
            conn.execute(dialect.ddl(statement))
        conn.execute(
            "INSERT INTO migrations (version, applied_at) VALUES (?, ?)",
            (version, int(time.time())),
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
