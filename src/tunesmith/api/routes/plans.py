"""Training methods, plans and job controls (tunesmith extensions): the settings each method's
config has; a job's plan before it is created (files checked, "auto" resolved, estimate, the CLI
command); and which statuses allow cancel, pause and resume."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from tunesmith.api.deps import StoreDep
from tunesmith.api.protocol.fine_tuning import CreateFineTuningJob
from tunesmith.api.protocol.plans import JobControls, Plan, TrainingMethodList
from tunesmith.api.routes.fine_tuning import check_model, method_hyperparameters, to_config
from tunesmith.jobs.control import CONTROLS
from tunesmith.jobs.plans import plan
from tunesmith.store.states import JOB_FINAL
from tunesmith.train.config import dump_yaml
from tunesmith.train.flags import describe_methods, train_command

router = APIRouter(tags=["fine-tuning"])
GRADER_FILE = "grader.json"  # what the command calls a grpo job's grader, written beside it


@router.get("/fine_tuning/methods", response_model=TrainingMethodList)
def list_training_methods() -> dict:
    """Each method with every setting of its config: name, flag, kind, default, help, group."""
    return {"object": "list", "data": describe_methods()}


@router.get("/fine_tuning/controls", response_model=JobControls)
def job_controls() -> dict:
    """The statuses each of cancel, pause and resume is legal from (store/states.py's moves)."""
    return {
        "object": "fine_tuning.controls",
        **{name: sorted(statuses) for name, statuses in CONTROLS.items()},
        "final": sorted(JOB_FINAL),
    }


@router.post("/fine_tuning/plans", response_model=Plan)
def create_plan(body: CreateFineTuningJob, store: StoreDep) -> dict:
    """The body of POST /v1/fine_tuning/jobs, planned and not created: the data checked (errors
    come back in `report` with `ok` false), "auto" resolved, the estimate, and the same job as a
    `tunesmith train` command and a YAML config naming the uploaded files by their names."""
    config = to_config(body, method_hyperparameters(body))
    check_model(store, body.model)
    result = plan(store, config, body.training_file, body.validation_file)
    files = {"data": store.files.get(body.training_file).filename}
    if body.validation_file:
        files["validation"] = store.files.get(body.validation_file).filename
    if getattr(config, "grader", None) is not None:
        files["grader"] = GRADER_FILE
    stats, resolved = result.report.stats, result.resolved
    estimate = None
    if stats is not None and resolved is not None:
        estimate = {
            "examples": result.report.n_examples,
            "validation_examples": result.report.n_validation_examples,
            "epochs": stats.n_epochs,
            "tokens": stats.tokens_per_epoch,
            "billed_tokens": stats.billed_tokens,
            "tokens_per_second": stats.tokens_per_second,
            "seconds": stats.estimated_seconds,
            "total_steps": resolved.total_steps,
        }
    named = config.model_copy(
        update={"data": Path(files["data"]), "validation": _path(files.get("validation"))}
    )
    return {
        "object": "fine_tuning.plan",
        "ok": result.report.ok,
        "config": config.model_dump(mode="json"),
        "resolved": resolved.model_dump() if resolved else None,
        "estimate": estimate,
        "report": result.report.to_dict(),
        "command": train_command(config, files),
        "yaml": dump_yaml(named),
    }


def _path(name: str | None) -> Path | None:
    return Path(name) if name else None
