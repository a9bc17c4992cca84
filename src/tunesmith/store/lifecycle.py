"""Status changes and leases for a table of jobs or comparisons, as conditional UPDATEs.

A status changes only by `move`, which allows the move only from the statuses its table
(states.py) lists, in the UPDATE's own WHERE clause: the database refuses an illegal or racing
move. Who runs a row is a lease, the (host, pid) of its runner, taken with the move to running
and given back when the runner is done, so one job never has two runners: a server worker cannot
take a job that a terminal is running, and a resumed job waits until its last runner let go.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunesmith.errors import TunesmithError
from tunesmith.store.db import dumps
from tunesmith.store.states import sources

if TYPE_CHECKING:
    from tunesmith.store.db import Store


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
        **fields: Any,
    ) -> bool:
        """Move `row_id` to `to`; False when its status (or a lease) does not allow it now."""
        froms = sources(self.moves, to)
        if only_from is not None:
            wanted = frozenset(only_from)
            if not wanted <= froms:  # a bug in the caller, not a state of the row
                raise ValueError(f"{self.table}: no move {sorted(wanted - froms)} -> {to}")
            froms = wanted
        if to in self.final and "finished_at" not in fields:
            fields["finished_at"] = int(time.time())
        names, values = assignments({"status": to, **fields})
        marks = ",".join("?" * len(froms))
        lease = " AND worker_pid IS NULL" if lease_free else ""
        return bool(
            self.store.execute(
                f"UPDATE {self.table} SET {names} WHERE id = ? AND status IN ({marks}){lease}",
                [*values, row_id, *sorted(froms)],
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
        return self.move(
            row_id, "running", only_from=only_from, lease_free=True,
            worker_pid=runner.pid, runner_host=runner.host, **fields,
        )  # fmt: skip

    def claim_next(self, runner: Runner) -> str | None:
        """Take the oldest queued row nobody holds; two runners never get the same one."""
        with self.store.transaction() as conn:
            row = conn.execute(
                f"SELECT id FROM {self.table} WHERE status = 'queued' AND worker_pid IS NULL "
                "ORDER BY seq ASC LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                f"UPDATE {self.table} SET status = 'running', worker_pid = ?, runner_host = ? "
                "WHERE id = ?",
                [runner.pid, runner.host, row["id"]],
            )
        return row["id"]

    def release(self, row_id: str, runner: Runner) -> bool:
        """`runner` is done with the row (whatever its status now), or is known to be gone;
        False when another runner holds it."""
        return bool(
            self.store.execute(
                f"UPDATE {self.table} SET worker_pid = NULL, runner_host = NULL "
                "WHERE id = ? AND worker_pid = ? AND runner_host = ?",
                [row_id, runner.pid, runner.host],
            )
        )


def assignments(fields: dict[str, Any]) -> tuple[str, list[Any]]:
    """`a = ?, b = ?` and the values, with dicts and lists stored as JSON."""
    names = ", ".join(f"{k} = ?" for k in fields)
    return names, [dumps(v) if isinstance(v, dict | list) else v for v in fields.values()]
