"""One job on many processes: the torchrun (or `accelerate launch`) command line, and the
supervisor that runs it as one job.

The process that holds the job's lease (`tunesmith train`, or a server's worker) starts the
launcher and watches it; each rank runs `python -m tunesmith.train.rank JOB_ID`. The supervisor
never trains: it forwards its own reasons to stop through a file that rank 0 reads at each step
boundary (rank 0 then tells every rank, train/rank.py), shows rank 0's metrics as progress, and
fails the job naming the rank that crashed.

CPU runs go through torchrun, never `accelerate launch --cpu`: that starts one process whatever
`--num_processes` says (huggingface/accelerate#2741).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.train import events as ev
from tunesmith.train import rank
from tunesmith.train.run import fail_job

if TYPE_CHECKING:
    from tunesmith.store import Store
    from tunesmith.store.jobs import JobRow
    from tunesmith.train.config import SFTConfig

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
# TRL's accelerate configs, shipped in the trl package (trl/accelerate_configs/NAME.yaml).
TRL_CONFIGS = ("multi_gpu", "single_gpu", "zero1", "zero2", "zero3", "fsdp1", "fsdp2")
LAUNCHER_LOG = "launcher.log"
DEFAULT_PORT = 29500  # torchrun's


def is_distributed(config: SFTConfig) -> bool:
    """Whether the job runs under a launcher rather than in its runner's own process."""
    return config.world_size > 1 or config.accelerate_config is not None


def accelerate_config_path(name: str) -> Path:
    """TRL's shipped config NAME, or the user's YAML file; ValueError naming the choices."""
    if name in TRL_CONFIGS:
        spec = importlib.util.find_spec("trl")
        if spec is None or not spec.submodule_search_locations:
            raise ValueError("accelerate_config names TRL's configs, and trl is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / "accelerate_configs"
        path = path / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"this trl install has no accelerate config {name!r} ({path})")
        return path
    path = Path(name).expanduser()
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        return path.resolve()
    raise ValueError(
        f"{name!r} is neither one of TRL's accelerate configs ({', '.join(TRL_CONFIGS)}) "
        f"nor a YAML file that exists"
    )


def launch_command(config: SFTConfig, job_id: str, python: str = sys.executable) -> list[str]:
    """The command that starts every rank of this machine: torchrun by default, `accelerate
    launch --config_file` for FSDP and DeepSpeed. torchrun's own options carry the nodes."""
    entry = ["-m", "tunesmith.train.rank", job_id]
    one_machine = config.nnodes == 1 and config.master_port is None
    port = str(config.master_port or DEFAULT_PORT)
    if config.accelerate_config is None:
        cmd = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(config.nproc)]
        if one_machine:  # torchrun finds a free port: two runs on one machine never collide
            return [*cmd, "--standalone", *entry]
        cmd += ["--nnodes", str(config.nnodes), "--node-rank", str(config.node_rank)]
        cmd += ["--master-addr", config.master_addr, "--master-port", port]
        return cmd + entry
    path = accelerate_config_path(config.accelerate_config)
    cmd = [python, "-m", "accelerate.commands.launch", "--config_file", str(path)]
    cmd += ["--num_processes", str(config.world_size), "--num_machines", str(config.nnodes)]
    if not one_machine:
        cmd += ["--machine_rank", str(config.node_rank), "--main_process_ip", config.master_addr]
        cmd += ["--main_process_port", port]
    return cmd + entry


def shown(command: list[str]) -> str:
    """A command as one shell line, for events and `--print-command`."""
    return shlex.join(command)


def needs_gpu(config: SFTConfig) -> bool:
    """Runs through accelerate are GPU runs (FSDP, DeepSpeed, multi_gpu): on a CPU, torchrun
    starts the N processes that `accelerate launch --cpu` would not."""
    return config.accelerate_config is not None


# --- the supervisor -------------------------------------------------------------------------------
def supervise(
    store: Store,
    job_id: str,
    config: SFTConfig,
    *,
    progress: ev.ProgressFn | None = None,
    stop_requested: ev.StopFn | None = None,
) -> JobRow:
    """Run a claimed job on its processes to their end; the caller keeps the lease.

    Raises TunesmithError, after failing the job, when the launch is refused or a rank fails.
    """
    from tunesmith.errors import TunesmithError
    from tunesmith.models.hardware import pick_device

    job = store.jobs.get(job_id)
    run_dir = Path(job.run_dir)
    if needs_gpu(config) and pick_device(config.device) != "cuda":
        message = f"accelerate config {config.accelerate_config} needs GPUs, and none is here"
        fail_job(store, job_id, message, "gpu_required")
        raise TunesmithError(
            f"Job {job_id} failed: {message}.",
            "Drop --accelerate-config on this machine: --nproc N runs DDP on CPUs, through "
            "torchrun (accelerate's CPU launcher starts one process, huggingface/accelerate#2741).",
            param="accelerate_config",
        )
    _clear(run_dir)
    command = launch_command(config, job_id)
    store.events.add(
        job_id,
        f"Launching {config.world_size} processes: {shown(command)}",
        data={"command": command, "world_size": config.world_size},
    )
    env = rank_environment(store, config)
    # A session of its own: a Ctrl-C in the terminal reaches this process only, which passes it
    # on as a stop at the next step (a checkpoint kept) instead of killing every rank mid-step.
    # The ranks' output (warnings, tracebacks, torchrun's failure report) goes to a log in the
    # run folder: the terminal keeps the progress bar, the log outlives the run.
    with (run_dir / LAUNCHER_LOG).open("ab") as output:
        launcher = subprocess.Popen(
            command, env=env, start_new_session=True, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            code = _watch(store, job_id, run_dir, launcher, progress, stop_requested)
        finally:
            if launcher.poll() is None:  # this process is being torn down: take the ranks along
                launcher.terminate()
                launcher.wait()
    if code != 0 and _ended(run_dir):  # the run ended; a rank failed on its way out
        log.warning("job %s: the launcher exited with code %s after the run ended", job_id, code)
        return store.jobs.get(job_id)
    if code != 0:
        message = failed_rank(run_dir, code)
        store.checkpoints.prune(job_id, run_dir)
        fail_job(store, job_id, message, "rank_failed")
        raise TunesmithError(
            f"Job {job_id} failed: {message}.",
            f"The ranks' output is in {run_dir / LAUNCHER_LOG}; continue from the last "
            f"checkpoint with `tunesmith train --resume {job_id}`.",
            code="rank_failed",
        )
    return store.jobs.get(job_id)


def rank_environment(store: Store, config: SFTConfig) -> dict[str, str]:
    """This process's environment, plus what the ranks must share with it: the store's settings
    (a server's may come from flags, not the environment) and whose lease the job is under."""
    env = dict(os.environ)
    for name, value in store.settings.model_dump(mode="json").items():
        if isinstance(value, str | int | float | bool):  # lists (API keys, hosts) stay out
            env[f"TUNESMITH_{name.upper()}"] = str(value)
    env["TUNESMITH_SUPERVISOR_PID"] = str(os.getpid())
    if config.device != "cuda" and "OMP_NUM_THREADS" not in env:
        # Each rank would otherwise start a thread per core, and N ranks fight over them.
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // config.nproc))
    return env


def _watch(store, job_id, run_dir: Path, launcher, progress, stop_requested) -> int:
    """Wait for the launcher, forwarding a stop request and rank 0's metrics; its exit code."""
    seen = 0
    started = time.monotonic()
    while (code := launcher.poll()) is None:
        reason = stop_requested() if stop_requested else None
        if reason and not (run_dir / rank.STOP_FILE).exists():
            (run_dir / rank.STOP_FILE).write_text(reason)
        if progress is not None:
            seen = _report(store, job_id, seen, started, progress)
        time.sleep(POLL_SECONDS)
    if progress is not None:
        _report(store, job_id, seen, started, progress)
    return code


def _report(store, job_id: str, seen: int, started: float, progress: ev.ProgressFn) -> int:
    metrics = store.events.metrics(job_id)
    if len(metrics) > seen:
        m = metrics[-1]
        progress(
            ev.Progress(
                step=m["step"],
                total_steps=m["total_steps"],
                epoch=m.get("epoch", 0.0),
                train_loss=m.get("train_loss", 0.0),
                train_accuracy=m.get("train_mean_token_accuracy", 0.0),
                tokens_per_second=m.get("tokens_per_second", 0.0),
                elapsed=time.monotonic() - started,
                valid_loss=m.get("valid_loss"),
            )
        )
    return len(metrics)


def failed_rank(run_dir: Path, code: int) -> str:
    """Which rank failed and why, from the ranks' own records, in this order: the first that
    raised an error of its own; one that started and never ended (SIGKILL, the OOM killer; when
    several, torchrun's root cause in the log decides); one whose collective broke (a peer died);
    else the launcher itself."""
    statuses = rank.read_statuses(run_dir)
    failed = sorted((s for s in statuses if s["state"] == "failed"), key=lambda s: s["at"])
    own = [s for s in failed if not s.get("collective")]
    if own:
        return _named(own[0], f"failed: {own[0]['message']}")
    vanished = [s for s in statuses if s["state"] == "started"]
    if vanished:
        root = root_cause_rank(run_dir / LAUNCHER_LOG)
        first = next((s for s in vanished if s["rank"] == root), vanished[0])
        return _named(first, "died without a word (killed? out of memory?)")
    if failed:
        return _named(failed[0], f"failed: {failed[0]['message']}")
    root = root_cause_rank(run_dir / LAUNCHER_LOG)
    if root is not None:
        return f"rank {root} exited with an error (torchrun's report is in {LAUNCHER_LOG})"
    return f"the launcher exited with code {code} before any rank started"


def _ended(run_dir: Path) -> bool:
    """Every rank finished the run (rank 0 moved the job to its end)."""
    statuses = rank.read_statuses(run_dir)
    return bool(statuses) and all(s["state"] == "done" for s in statuses)


def _named(status: dict, what: str) -> str:
    return f"rank {status['rank']} (pid {status['pid']} on {status['host']}) {what}"


def root_cause_rank(log_file: Path) -> int | None:
    """The rank torchrun's failure report names as the root cause ("rank : 1 (local_rank: 1)")."""
    if not log_file.exists():
        return None
    text = log_file.read_text(errors="replace")
    _, _, after = text.rpartition("Root Cause")
    match = re.search(r"rank\s*:\s*(\d+)", after)
    return int(match.group(1)) if match else None


def _clear(run_dir: Path) -> None:
    """A new launch starts with no stop request and no ranks' records from an earlier one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / rank.STOP_FILE).unlink(missing_ok=True)
    for old in (run_dir / rank.RANKS_FOLDER).glob("rank-*.json"):
        old.unlink()
