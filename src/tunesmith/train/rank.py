"""One rank of a distributed run: `python -m tunesmith.train.rank JOB_ID`, started by torchrun
(or `accelerate launch`) from train/distributed.py, and the helpers a rank asks (is it rank 0,
how many ranks, what they agree on).

Every rank trains; only rank 0 writes to the store (events, metrics, checkpoints, the model).
A rank tells its supervisor how it ended in `RUN_DIR/ranks/rank-R.json`, so a crash is named
by rank even when torchrun's own report is cut short.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from tunesmith import atomic
from tunesmith.processes import pid_alive

RANKS_FOLDER = "ranks"
STOP_FILE = "stop-request"  # the supervisor's own reasons to stop (Ctrl-C, a server stopping)


def world_size() -> int:
    """Ranks in the run (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def global_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes."""
    return global_rank() == 0


def _distributed() -> bool:
    import torch.distributed as dist

    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def all_sum(values: list[float], device: Any = "cpu") -> list[float]:
    """The element-wise sum over all ranks (a collective: every rank must call it)."""
    if not _distributed():
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


REASONS = (None, "cancel", "pause", "requeue")


def agree_on_stop(reason: str | None, device: Any = "cpu") -> str | None:
    """Rank 0's stop reason, on every rank: all ranks stop at the same step boundary."""
    if not _distributed():
        return reason
    import torch
    import torch.distributed as dist

    code = torch.tensor([REASONS.index(reason) if is_main() else 0], device=device)
    dist.broadcast(code, src=0)
    return REASONS[int(code.item())]


# --- how a rank ended, for its supervisor ---------------------------------------------------------
def status_path(run_dir: Path, rank: int) -> Path:
    return run_dir / RANKS_FOLDER / f"rank-{rank}.json"


def write_status(run_dir: Path, state: str, **extra: Any) -> None:
    """This rank's state (started, done, failed, terminated), written whole (a rename)."""
    path = status_path(run_dir, global_rank())
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "rank": global_rank(),
        "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
        "world_size": world_size(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "state": state,
        "at": time.time(),
        **extra,
    }
    atomic.write_text(path, json.dumps(record))


def read_statuses(run_dir: Path) -> list[dict]:
    """Every rank's last record, by rank."""
    folder = run_dir / RANKS_FOLDER
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("rank-*.json"))]
    return sorted(records, key=lambda r: r["rank"])


def requested_stop(run_dir: Path) -> str | None:
    """The supervisor's reason to stop, if it wrote one."""
    path = run_dir / STOP_FILE
    return (path.read_text().strip() or None) if path.exists() else None


def supervisor_gone() -> bool:
    """The process that holds the job's lease died: its job is recovery's now, so stop."""
    pid = int(os.environ.get("TUNESMITH_SUPERVISOR_PID", "0"))
    return bool(pid) and not pid_alive(pid)


# --- the entry point ------------------------------------------------------------------------------
def main(job_id: str) -> int:
    """Train `job_id` as this rank. Rank 0 reads the job's stop requests (a cancel or pause
    through any door, the supervisor's own) and every rank obeys it at the same step."""
    from tunesmith.logs import quiet_libraries
    from tunesmith.store import open_store
    from tunesmith.train.run import failure, run

    quiet_libraries()
    store = open_store()
    run_dir = Path(store.jobs.get(job_id).run_dir)

    def terminated(signum, frame):  # torchrun stops the other ranks when one fails
        write_status(run_dir, "terminated", signal=signum)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    write_status(run_dir, "started")

    def should_stop() -> str | None:
        if not is_main():
            return None
        if supervisor_gone():
            return "requeue"
        # a cancel or pause through any door (jobs/control.py, a floor above, reads it alike)
        status = store.jobs.get(job_id).status
        return requested_stop(run_dir) or {"cancelled": "cancel", "paused": "pause"}.get(status)

    try:
        job = run(job_id, store, stop_requested=should_stop, resume=_resume(store, job_id))
    except BaseException as exc:
        message, code, _ = failure(job_id, exc)
        # A collective that broke because another rank died is not this rank's fault.
        write_status(run_dir, "failed", message=message, code=code, collective=_collective(exc))
        return 1
    write_status(run_dir, "done", status=job.status)
    _leave()
    return 0


def _leave() -> None:
    """Wait for every rank (rank 0 registers the model last), then close the process group: a
    rank that exits with gloo's threads still running aborts ("terminate called without an
    active exception"), and torchrun would report the finished run as failed."""
    if _distributed():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def _collective(exc: BaseException) -> bool:
    import torch.distributed as dist

    # a vanished peer may also surface as a plain RuntimeError from gloo's transport
    text = str(exc)
    return isinstance(exc, dist.DistError) or "gloo" in text or "Connection closed" in text


def _resume(store, job_id: str) -> bool:
    return store.checkpoints.latest(job_id) is not None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
