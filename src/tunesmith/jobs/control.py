"""Cancel, pause and resume: state changes in the store that the running worker obeys.

The API answers at once with the new state; the process training the job reads the state at each
step boundary (`stop_requested`) and stops there, saving a checkpoint. So the same calls work for
a job trained by a server worker and for one trained by `tunesmith train` in a terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from tunesmith.store import Store
    from tunesmith.store.jobs import JobRow


def _refuse(job: JobRow, action: str) -> TunesmithError:
    # 400, never 409: the OpenAI SDK retries 409.
    return TunesmithError(
        f"Job {job.id} is {job.status}; it cannot be {action}.",
        param="fine_tuning_job_id",
        code="invalid_job_state",
    )


def cancel(store: Store, job_id: str) -> JobRow:
    job = store.jobs.get(job_id)
    if job.status not in ("validating_files", "queued", "running", "paused"):
        raise _refuse(job, "cancelled")
    was = job.status
    job = store.jobs.transition(
        job_id, "cancelled", allowed_from={"validating_files", "queued", "running", "paused"}
    )
    if was != "running":  # a running job's trainer writes the event when it stops
        store.events.add(job_id, "Fine-tuning job cancelled")
    return job


def pause(store: Store, job_id: str) -> JobRow:
    job = store.jobs.get(job_id)
    if job.status not in ("queued", "running"):
        raise _refuse(job, "paused")
    return store.jobs.transition(job_id, "paused", allowed_from={"queued", "running"})


def resume(store: Store, job_id: str) -> JobRow:
    """A paused job goes back to the queue; a worker continues it from its last checkpoint."""
    job = store.jobs.get(job_id)
    if job.status != "paused":
        raise _refuse(job, "resumed")
    store.events.add(job_id, "Fine-tuning job resumed, moving job to queued state")
    return store.jobs.transition(job_id, "queued", allowed_from={"paused"})


def stop_reason(store: Store, job_id: str) -> str | None:
    """What the training process should do at this step boundary: cancel, pause or go on."""
    status = store.jobs.get(job_id).status
    return {"cancelled": "cancel", "paused": "pause"}.get(status)
