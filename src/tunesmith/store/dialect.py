"""What differs between SQLite and PostgreSQL, in one place, so the repositories write one SQL.

The repositories write SQLite's dialect with `?` placeholders; `Postgres.sql` turns it into
psycopg's. The migrations' DDL is plain SQL too, with two words that only SQLite reads as meant:
`INTEGER PRIMARY KEY AUTOINCREMENT` (PostgreSQL: a BIGSERIAL) and `INTEGER` (PostgreSQL's is 32
bits, too small for byte counts and token totals; SQLite's is 64). JSON columns stay TEXT on both,
so rows decode the same way; the one query that looks inside JSON (a job's metadata) asks
`json_pairs`.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from tunesmith.errors import TunesmithError

# The key of the advisory lock that serialises migrations across processes on PostgreSQL
# (SQLite's BEGIN IMMEDIATE does that on its own). Any constant; this one spells "tune".
MIGRATION_LOCK = 0x74756E65


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the store needs of a connection: sqlite3's own, or `PostgresConnection`."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Cursor: ...
    def close(self) -> None: ...


class Dialect:
    name = "sqlite"
    begin = "BEGIN IMMEDIATE"  # take the write lock now: two claims cannot read the same row
    skip_locked = ""  # SQLite has one writer at a time; nothing to skip

    def connect(self, target: str | Path) -> Connection:
        conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        _wal(conn, target)
        return conn

    def sql(self, text: str) -> str:
        return text

    def ddl(self, statement: str) -> str:
        return statement

    def json_pairs(self, column: str) -> str:
        """A table of (key, value) text pairs of the JSON object in `column`."""
        return f"json_each({column})"

    def migrating(self, conn: Connection) -> AbstractContextManager[None]:
        """Held around all migrations (each also runs in its own `begin` transaction)."""
        return nullcontext()


class Postgres(Dialect):
    name = "postgresql"
    begin = "BEGIN"  # row locks (FOR UPDATE, conditional UPDATEs) do what SQLite's lock did
    # A row another claim holds is passed over, not waited on.
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def connect(self, target: str | Path) -> Connection:
        try:
            return PostgresConnection(str(target))
        except ImportError as exc:
            raise TunesmithError(
                "TUNESMITH_DATABASE_URL names PostgreSQL, but psycopg is not installed.",
                "pip install 'tunesmith[postgres]' (psycopg 3), or unset TUNESMITH_DATABASE_URL "
                "to use SQLite in the home folder.",
                param="database_url",
            ) from exc

    def sql(self, text: str) -> str:
        # The repositories' SQL holds no literal `?` or `%`; psycopg reads `%%` as a `%`.
        return text.replace("%", "%%").replace("?", "%s")

    def ddl(self, statement: str) -> str:
        statement = re.sub(
            r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", "BIGSERIAL PRIMARY KEY", statement
        )
        return re.sub(r"\bINTEGER\b", "BIGINT", statement)

    def json_pairs(self, column: str) -> str:
        return f"jsonb_each_text(CAST({column} AS jsonb))"

    @contextmanager
    def migrating(self, conn: Connection) -> Iterator[None]:
        # A session lock, taken before `CREATE TABLE IF NOT EXISTS migrations`: two processes
        # creating it at once would otherwise collide in PostgreSQL's catalog.
        conn.execute("SELECT pg_advisory_lock(?)", [MIGRATION_LOCK])
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(?)", [MIGRATION_LOCK])


SQLITE = Dialect()
POSTGRES = Postgres()


def dialect_for(target: str | Path) -> Dialect:
    """A `postgresql://` URL is PostgreSQL; anything else is a SQLite file."""
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        return POSTGRES
    return SQLITE


class Row(dict):
    """A PostgreSQL row that reads like sqlite3.Row: by column name, by position, and `dict(row)`."""

    def __init__(self, names: Sequence[str], values: Sequence[Any]) -> None:
        super().__init__(zip(names, values, strict=True))
        self._values = values

    def __getitem__(self, key: str | int) -> Any:
        return self._values[key] if isinstance(key, int) else super().__getitem__(key)


def _rows(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = [column.name for column in cursor.description or ()]
    return lambda values: Row(names, values)


class PostgresConnection:
    """A psycopg connection that takes the repositories' `?` SQL, like sqlite3's `execute`, and
    comes back after the server restarts or drops it (a failover, an idle timeout,
    `pg_terminate_backend`): before a statement outside a transaction, a connection found
    broken, or idle for PING_AFTER_SECONDS and not answering `SELECT 1`, is opened again. A
    statement whose connection breaks while it runs is not sent again (whether it ran is
    unknown): it fails with a 503, and the next one runs on a new connection."""

    PING_AFTER_SECONDS = 1.0

    def __init__(self, url: str) -> None:
        self.url = url
        self.raw = self._open()
        self._used = time.monotonic()

    def _open(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True, row_factory=_rows)

    def _ready(self) -> None:
        from psycopg import OperationalError
        from psycopg.pq import TransactionStatus

        if self.raw.info.transaction_status != TransactionStatus.IDLE and not self.raw.broken:
            return  # inside a transaction: its statements go on this connection or fail
        if not self.raw.broken and time.monotonic() - self._used < self.PING_AFTER_SECONDS:
            return
        try:
            if not self.raw.broken:
                self.raw.execute("SELECT 1")
                return
        except OperationalError:
            pass
        self.raw.close()
        self.raw = self._open()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        from psycopg import OperationalError

        self._ready()
        try:
            # Always a sequence, never None: psycopg then reads `%%` in the SQL as one `%`.
            cursor = self.raw.execute(POSTGRES.sql(sql), list(params))
        except OperationalError as exc:
            if not self.raw.broken:
                raise
            raise TunesmithError(
                f"The connection to PostgreSQL broke while a statement ran: {exc}",
                "Retry: the next statement opens a new connection (whether this one ran is "
                "unknown).",
                status=503,
            ) from exc
        self._used = time.monotonic()
        return cursor

    def close(self) -> None:
        self.raw.close()


def _wal(conn: sqlite3.Connection, path: str | Path) -> None:
    """Switch to WAL once per database file. Switching does not wait on busy_timeout when
    another connection holds the fresh file, so retry briefly."""
    for attempt in range(100):
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode == "wal" or conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
        time.sleep(0.01 * (attempt + 1))
    raise sqlite3.OperationalError(f"could not switch {path} to WAL mode")
