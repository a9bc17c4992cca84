"""The Store: one database connection per process (SQLite or PostgreSQL, see dialect.py), and
the repositories hanging off it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunesmith.settings import Settings, get_settings
from tunesmith.store.dialect import SQLITE, Connection, dialect_for
from tunesmith.store.migrations import migrate


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """Files, jobs, events, checkpoints and models of one tunesmith home.

    One connection serves the process; a lock serialises it across threads (FastAPI runs sync
    routes in a thread pool). Other processes (workers, `tunesmith train`) open their own Store.
    `target` is a SQLite file (WAL lets readers and one writer work at once, and `busy_timeout`
    waits out a writer) or a `postgresql://` URL, which any number of hosts can share.
    """

    def __init__(self, target: Path | str, settings: Settings | None = None) -> None:
        from tunesmith.store.checkpoints import Checkpoints
        from tunesmith.store.deployments import Deployments
        from tunesmith.store.events import Events
        from tunesmith.store.files import Files
        from tunesmith.store.jobs import Jobs
        from tunesmith.store.registry import Registry
        from tunesmith.store.tasks import COMPARISON, EXPORT, Tasks

        self.dialect = dialect_for(target)
        self.path = Path(target) if self.dialect is SQLITE else None  # the SQLite file, if any
        self.settings = settings or get_settings()
        self._lock = threading.RLock()
        self._conn = self.dialect.connect(target)
        with self._lock:
            migrate(self._conn, self.dialect)
        self.files = Files(self)
        self.jobs = Jobs(self)
        self.events = Events(self)
        self.checkpoints = Checkpoints(self)
        self.models = Registry(self)
        self.deployments = Deployments(self)
        self.comparisons = Tasks(self, COMPARISON)
        self.exports = Tasks(self, EXPORT)
        self.tasks = {t.kind.table: t for t in (self.comparisons, self.exports)}

    def query(self, sql: str, params: tuple | list = ()) -> list[Any]:
        """Rows readable by column name (`row["id"]`), by position, and as `dict(row)`."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple | list = ()) -> int:
        """Run one statement in autocommit mode; returns the number of rows changed."""
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Several statements that land together or not at all."""
        with self._lock:
            self._conn.execute(self.dialect.begin)
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        for lifecycle in (self.jobs.lifecycle, *(t.lifecycle for t in self.tasks.values())):
            lifecycle.stop_beating()
        with self._lock:
            self._conn.close()


def open_store(settings: Settings | None = None) -> Store:
    """The store of these settings: TUNESMITH_DATABASE_URL's PostgreSQL, else the home's SQLite."""
    settings = settings or get_settings()
    return Store(settings.database_url or settings.db_path, settings)
