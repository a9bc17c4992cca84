"""The lifecycles of jobs and of background tasks (comparisons, exports), as data: every status, and which status may follow which.

Every change of status goes through one conditional UPDATE built from these tables
(`... SET status = ? WHERE id = ? AND status IN (<the statuses it may follow>)`), so the database
itself refuses an illegal move, and of two racing moves only one lands. docs/architecture.md draws
the same tables as state diagrams; `tests/store/test_states.py` drives every pair.
"""

from __future__ import annotations

from typing import Literal

JobStatus = Literal[
    "validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"
]

# (from, to): why the move happens. Only these moves exist.
JOB_MOVES: dict[tuple[str, str], str] = {
    ("validating_files", "queued"): "its files are valid; a worker will claim it",
    ("validating_files", "running"): "its files are valid and the door that checked them runs it "
    "(CLI, demo, compare --train-now): claimed at once, so no worker can take it",
    ("validating_files", "failed"): "its files were refused (file, line and field in the error)",
    ("validating_files", "cancelled"): "cancelled before its files were checked",
    ("queued", "running"): "claimed by one runner",
    ("queued", "paused"): "paused before it started",
    ("queued", "cancelled"): "cancelled before it started",
    ("queued", "failed"): "it can no longer run (its data changed, or it crashed too often)",
    ("running", "succeeded"): "trained; the final model is registered in the same transaction",
    ("running", "failed"): "training failed",
    ("running", "cancelled"): "cancel asked; the runner stops at its next step boundary",
    ("running", "paused"): "pause asked; the runner stops at its next step boundary",
    ("running", "queued"): "its runner stopped (server shutdown, crash): continues from the "
    "last checkpoint",
    ("paused", "queued"): "resumed; a worker continues it from its last checkpoint",
    ("paused", "running"): "resumed in the foreground (`tunesmith train --resume`)",
    ("paused", "cancelled"): "cancelled while paused",
    ("cancelled", "running"): "`tunesmith train --resume` continues it from its last checkpoint",
    ("failed", "running"): "`tunesmith train --resume` after a fixable failure (a full disk)",
}
JOB_STATUSES: tuple[str, ...] = (
    "validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled",
)  # fmt: skip
JOB_FINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
JOB_ACTIVE: frozenset[str] = frozenset({"validating_files", "queued", "running", "paused"})

# Background tasks (comparisons, exports): no checkpoints, so no pause; run again after a crash.
TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TASK_MOVES: dict[tuple[str, str], str] = {
    ("queued", "running"): "claimed by one worker",
    ("queued", "cancelled"): "cancelled before it started",
    ("running", "succeeded"): "done; its report or files are written",
    ("running", "failed"): "it failed, or its worker crashed once too often",
    ("running", "cancelled"): "cancel asked; the worker stops at its next step",
    ("running", "queued"): "its worker stopped (crash, shutdown) and attempts remain",
}
TASK_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
TASK_FINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def sources(moves: dict[tuple[str, str], str], to: str) -> frozenset[str]:
    """The statuses `to` may follow."""
    return frozenset(src for src, dst in moves if dst == to)
