"""Cancel, pause and resume: moves in the store that the job's runner obeys.

The door answers at once with the new state; the process training the job reads the state at each
step boundary (`stop_reason`) and stops there, saving a checkpoint. So the same calls work for a
job trained by a server worker and for one trained by `tunesmith train` in a terminal. A move the
job's status does not allow is a 400 invalid_job_state (never 409: the OpenAI SDK retries 409).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunesmith.store.states import JOB_MOVES, sources

if TYPE_CHECKING:
    from tunesmith.store import Store
    from tunesmith.store.jobs import JobRow


# Each control and the statuses it is legal from (what a UI enables): cancel and pause are every
# move to their status; resume is the door's one move out of paused (the CLI's --resume differs).
CONTROLS: dict[str, frozenset[str]] = {
    "cancel": sources(JOB_MOVES, "cancelled"),
    "pause": sources(JOB_MOVES, "paused"),
    "resume": frozenset({"paused"}),
}


def cancel(store: Store, job_id: str) -> JobRow:
    was = store.jobs.get(job_id).status
    job = store.jobs.move(job_id, "cancelled")
    if was != "running":  # a running job's trainer writes the event when it stops
        store.events.add(job_id, "Fine-tuning job cancelled")
    return job


def pause(store: Store, job_id: str) -> JobRow:
    return store.jobs.move(job_id, "paused")


def resume(store: Store, job_id: str) -> JobRow:
    """A paused job goes back to the queue; a worker continues it from its last checkpoint."""
    job = store.jobs.move(job_id, "queued", only_from=CONTROLS["resume"])
    store.events.add(job_id, "Fine-tuning job resumed, moving job to queued state")
    return job


def stop_reason(store: Store, job_id: str) -> str | None:
    """What the training process should do at this step boundary: cancel, pause or go on."""
    status = store.jobs.get(job_id).status
    return {"cancelled": "cancel", "paused": "pause"}.get(status)
