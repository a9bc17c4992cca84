"""Status changes and leases for a table of jobs or comparisons, as conditional UPDATEs.

A status changes only by `move`, which allows the move only from the statuses its table
(states.py) lists, in the UPDATE's own WHERE clause: the database refuses an illegal or racing
move. Who runs a row is a lease, the (host, pid) of its runner, taken with the move to running
and given back when the runner is done, so one job never has two runners: a server worker cannot
take a job that a terminal is running, and a resumed job waits until its last runner let go.

A lease is also renewed: the row keeps its last heartbeat in `heartbeat_at`, and a lease this
process took for itself (`Runner.here()`) is renewed by a thread every quarter lease until it is
given back, whichever code runs the job or task. A pid means something only on its own host, so
another host sharing the store (PostgreSQL) takes a runner as dead only once its heartbeat is
older than the lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunesmith.errors import TunesmithError
from tunesmith.store.db import dumps
from tunesmith.store.states import sources

if TYPE_CHECKING:
    from tunesmith.store.db import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runner:
    """The process that runs a job or comparison: its pid on its host."""

    pid: int
    host: str

    @classmethod
    def here(cls) -> Runner:
        return cls(os.getpid(), socket.gethostname())


class Lifecycle:
    def __init__(
        self,
        store: Store,
        table: str,
        moves: dict[tuple[str, str], str],
        final: frozenset[str],
        noun: str,
    ) -> None:
        self.store = store
        self.table = table
        self.moves = moves
        self.final = final
        self.noun = noun  # "Job", "Comparison": how errors name a row
        self._beating: dict[str, Heartbeat] = {}  # the leases this process renews, by row
        self._beating_lock = threading.Lock()

    def status(self, row_id: str) -> str | None:
        rows = self.store.query(f"SELECT status FROM {self.table} WHERE id = ?", [row_id])
        return rows[0]["status"] if rows else None

    def move(
        self,
        row_id: str,
        to: str,
        *,
        only_from: Iterable[str] | None = None,
        lease_free: bool = False,
        held_by: Runner | None = None,
        **fields: Any,
    ) -> bool:
        """Move `row_id` to `to`; False when its status (or a lease) does not allow it now.
        `lease_free`: only if no runner holds the row; `held_by`: only if that runner does (a
        runner whose lease was taken from it must not move the row its successor runs)."""
        froms = sources(self.moves, to)
        if only_from is not None:
            wanted = frozenset(only_from)
            if not wanted <= froms:  # a bug in the caller, not a state of the row
                raise ValueError(f"{self.table}: no move {sorted(wanted - froms)} -> {to}")
            froms = wanted
        if not froms:  # no status leads to `to` (and PostgreSQL refuses an empty `IN ()`)
            return False
        if to in self.final and "finished_at" not in fields:
            fields["finished_at"] = int(time.time())
        names, values = assignments({"status": to, **fields})
        marks = ",".join("?" * len(froms))
        lease, holder = " AND worker_pid IS NULL" if lease_free else "", []
        if held_by is not None:
            lease += " AND worker_pid = ? AND runner_host = ?"
            holder = [held_by.pid, held_by.host]
        return bool(
            self.store.execute(
                f"UPDATE {self.table} SET {names} WHERE id = ? AND status IN ({marks}){lease}",
                [*values, row_id, *sorted(froms), *holder],
            )
        )

    def refused(self, row_id: str, to: str, param: str) -> TunesmithError:
        """The error for a move the row's status does not allow (400: the SDK retries 409)."""
        status = self.status(row_id)
        return TunesmithError(
            f"{self.noun} {row_id} is {status}; it cannot become {to}.",
            param=param,
            code="invalid_job_state",
        )

    # --- leases ----------------------------------------------------------------------------------
    def claim(
        self, row_id: str, runner: Runner, *, only_from: Iterable[str], **fields: Any
    ) -> bool:
        """Move to running for `runner`, only if no other runner holds the row."""
        claimed = self.move(
            row_id, "running", only_from=only_from, lease_free=True,
            worker_pid=runner.pid, runner_host=runner.host, heartbeat_at=int(time.time()),
            **fields,
        )  # fmt: skip
        if claimed:
            self._start_beating(row_id, runner)
        return claimed

    def claim_next(self, runner: Runner) -> str | None:
        """Take the oldest queued row nobody holds; two runners never get the same one.

        SQLite: BEGIN IMMEDIATE holds the one write lock from the SELECT to the UPDATE.
        PostgreSQL: `FOR UPDATE SKIP LOCKED` locks the row it reads and passes over rows other
        claims hold, so any number of workers on any number of hosts take turns without waiting.
        """
        with self.store.transaction() as conn:
            row = conn.execute(
                f"SELECT id FROM {self.table} WHERE status = 'queued' AND worker_pid IS NULL "
                f"ORDER BY seq ASC LIMIT 1{self.store.dialect.skip_locked}"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                f"UPDATE {self.table} SET status = 'running', worker_pid = ?, runner_host = ?, "
                "heartbeat_at = ? WHERE id = ?",
                [runner.pid, runner.host, int(time.time()), row["id"]],
            )
        self._start_beating(row["id"], runner)
        return row["id"]

    def release(self, row_id: str, runner: Runner) -> bool:
        """`runner` is done with the row (whatever its status now), or is known to be gone;
        False when another runner holds it."""
        self._stop_beating(row_id, runner)
        return bool(
            self.store.execute(
                f"UPDATE {self.table} SET worker_pid = NULL, runner_host = NULL, "
                "heartbeat_at = NULL WHERE id = ? AND worker_pid = ? AND runner_host = ?",
                [row_id, runner.pid, runner.host],
            )
        )

    def beat(self, row_id: str, runner: Runner) -> bool:
        """Renew `runner`'s lease on the row; False when it no longer holds it (released, or
        taken by recovery on another host after the lease ran out)."""
        return bool(
            self.store.execute(
                f"UPDATE {self.table} SET heartbeat_at = ? "
                "WHERE id = ? AND worker_pid = ? AND runner_host = ?",
                [int(time.time()), row_id, runner.pid, runner.host],
            )
        )

    @contextmanager
    def heartbeat(
        self, row_id: str, runner: Runner, every: float | None = None
    ) -> Iterator[Heartbeat]:
        """The thread that renews `runner`'s lease while the block runs: the one its claim
        started when this process claimed for itself, else one for the block alone. Its `lost`
        tells the runner to stop (a training step can outlast a lease, so the loop that runs
        the job cannot be the one that beats)."""
        with self._beating_lock:
            started = self._beating.get(row_id)
        if started is not None and started.runner == runner and every is None:
            yield started
            return
        beating = Heartbeat(self, row_id, runner, every or self.store.settings.lease_seconds / 4)
        beating.start()
        try:
            yield beating
        finally:
            beating.stop(wait=True)

    def _start_beating(self, row_id: str, runner: Runner) -> None:
        """Renew a lease this process took for itself for as long as it holds it; a runner
        named for another process (a test's, or one recovery acts for) beats on its own."""
        if runner != Runner.here():
            return
        beating = Heartbeat(self, row_id, runner, self.store.settings.lease_seconds / 4)
        with self._beating_lock:
            old, self._beating[row_id] = self._beating.get(row_id), beating
        if old is not None:
            old.stop()
        beating.start()

    def _stop_beating(self, row_id: str, runner: Runner | None = None) -> None:
        with self._beating_lock:
            beating = self._beating.get(row_id)
            if beating is None or (runner is not None and beating.runner != runner):
                return
            del self._beating[row_id]
        beating.stop()

    def stop_beating(self) -> None:
        """Stop every renewal (the store is closing); the leases run out unless given back."""
        with self._beating_lock:
            rows = list(self._beating)
        for row_id in rows:
            self._stop_beating(row_id)


class Heartbeat(threading.Thread):
    """Renews one lease every `every` seconds until stopped; `lost` once the lease is gone."""

    def __init__(self, lifecycle: Lifecycle, row_id: str, runner: Runner, every: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{row_id}")
        self.lifecycle, self.row_id, self.runner, self.every = lifecycle, row_id, runner, every
        self.lost = False
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.every):
            try:
                if not self.lifecycle.beat(self.row_id, self.runner):
                    self.lost = True
                    return
            except Exception:  # a database hiccup: the next beat may land; the lease is long
                log.warning("heartbeat for %s failed; retrying", self.row_id, exc_info=True)

    def stop(self, *, wait: bool = False) -> None:
        # Not joined by default: a release may run under the store's lock, which a beat in
        # flight waits for; the thread ends at its next wake-up.
        self._stopping.set()
        if wait and self.is_alive():
            self.join(timeout=5)


def lease_expired(heartbeat_at: int | None, lease_seconds: float, now: float | None = None) -> bool:
    """A lease last renewed more than `lease_seconds` ago. No heartbeat at all (a row claimed
    before heartbeats existed) is never expired: a job is left alone rather than run twice."""
    if heartbeat_at is None:
        return False
    return (now if now is not None else time.time()) - heartbeat_at > lease_seconds


def assignments(fields: dict[str, Any]) -> tuple[str, list[Any]]:
    """`a = ?, b = ?` and the values, with dicts and lists stored as JSON."""
    names = ", ".join(f"{k} = ?" for k in fields)
    return names, [dumps(v) if isinstance(v, dict | list) else v for v in fields.values()]
