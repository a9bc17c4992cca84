"""The Store: one SQLite connection (WAL) per process, and the repositories hanging off it."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunesmith.settings import Settings, get_settings
from tunesmith.store.migrations import migrate


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """Files, jobs, events, checkpoints and models of one tunesmith home.

    One connection serves the process; a lock serialises it across threads (FastAPI runs sync
    routes in a thread pool). Other processes (workers, `tunesmith train`) open their own Store:
    WAL lets readers and one writer work at once, and `busy_timeout` waits out a writer.
    """

    def __init__(self, path: Path, settings: Settings | None = None) -> None:
        from tunesmith.store.checkpoints import Checkpoints
        from tunesmith.store.deployments import Deployments
        from tunesmith.store.events import Events
        from tunesmith.store.files import Files
        from tunesmith.store.jobs import Jobs
        from tunesmith.store.registry import Registry
        from tunesmith.store.tasks import COMPARISON, EXPORT, Tasks

        self.path = path
        self.settings = settings or get_settings()
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._wal()
        with self._lock:
            migrate(self._conn)
        self.files = Files(self)
        self.jobs = Jobs(self)
        self.events = Events(self)
        self.checkpoints = Checkpoints(self)
        self.models = Registry(self)
        self.deployments = Deployments(self)
        self.comparisons = Tasks(self, COMPARISON)
        self.exports = Tasks(self, EXPORT)
        self.tasks = {t.kind.table: t for t in (self.comparisons, self.exports)}

    def _wal(self) -> None:
        """Switch to WAL once per database file. Switching does not wait on busy_timeout when
        another connection holds the fresh file, so retry briefly."""
        for attempt in range(100):
            try:
                mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
                if (
                    mode == "wal"
                    or self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
                ):
                    return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
            time.sleep(0.01 * (attempt + 1))
        raise sqlite3.OperationalError(f"could not switch {self.path} to WAL mode")

    def query(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple | list = ()) -> int:
        """Run one statement in autocommit mode; returns the number of rows changed."""
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Several statements that land together or not at all."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_store(settings: Settings | None = None) -> Store:
    settings = settings or get_settings()
    return Store(settings.db_path, settings)
