"""Fine-tuning jobs: create (validated in the background), list, retrieve, cancel, pause, resume,
events and checkpoints."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError

from tunesmith.api.deps import SettingsDep, StoreDep
from tunesmith.api.protocol.common import page
from tunesmith.api.protocol.fine_tuning import (
    CreateFineTuningJob,
    DpoHyperparameters,
    FineTuningJob,
    FineTuningJobCheckpointList,
    FineTuningJobEventList,
    FineTuningJobList,
    Hyperparameters,
)
from tunesmith.errors import NotFoundError, TunesmithError
from tunesmith.jobs import control
from tunesmith.jobs.service import create_job, openai_method
from tunesmith.train.config import (
    METHOD_CONFIGS,
    GRPOConfig,
    SFTConfig,
    base_learning_rate,
    config_error,
    parse_config,
)
from tunesmith.train.distributed import TRL_CONFIGS

router = APIRouter(tags=["fine-tuning"])

# Settings of the `config` extension that the request already carries under its own name.
_FROM_REQUEST = {
    "model": "model",
    "suffix": "suffix",
    "seed": "seed",
    "epochs": "method.{type}.hyperparameters.n_epochs",
    "batch_size": "method.{type}.hyperparameters.batch_size",
    "learning_rate": "method.{type}.hyperparameters.learning_rate_multiplier",
    "beta": "method.{type}.hyperparameters.beta",
    "grader": "method.reinforcement.grader",
}
_UNION_ARMS = (
    "int",
    "float",
    "literal",
    "str",
    "list",
    "function",
    *METHOD_CONFIGS,  # the tag of the method's config in pydantic's locations
)
# Files come by id (training_file, validation_file), never as paths on the server. (`mapping`,
# the columns of an uploaded CSV or Parquet file, does come through `config`.)
_NOT_THROUGH_API = ("data", "validation")


# --- translation: the request → the stored method and a config (pure, testable) -----------------


def method_type(body: CreateFineTuningJob) -> str:
    return body.method.type if body.method is not None else "supervised"


def method_hyperparameters(body: CreateFineTuningJob) -> Hyperparameters:
    """The hyperparameters of the request's method, from `method` or (for supervised jobs) the
    deprecated top-level field."""
    kind = method_type(body)
    section = getattr(body.method, kind, None) if body.method is not None else None
    from_method = section.hyperparameters if section is not None else None
    legacy = body.hyperparameters
    if kind != "supervised":
        if legacy is not None:
            raise TunesmithError(
                f"The deprecated top-level `hyperparameters` apply to supervised jobs only; this "
                f"is a {kind} job.",
                f"Give them in method.{kind}.hyperparameters.",
                param="hyperparameters",
            )
        if kind == "reinforcement" and section is None:
            raise TunesmithError(
                "A reinforcement job needs a grader to score the model's answers.",
                'Give method={"type": "reinforcement", "reinforcement": {"grader": {...}}}.',
                param="method.reinforcement.grader",
            )
        return from_method or (DpoHyperparameters() if kind == "dpo" else Hyperparameters())
    if from_method is not None and legacy is not None and from_method != legacy:
        raise TunesmithError(
            "Hyperparameters were given twice, differently: in `hyperparameters` (deprecated) and "
            "in `method.supervised.hyperparameters`.",
            "Give them once, in method.supervised.hyperparameters.",
            param="hyperparameters",
        )
    return from_method or legacy or Hyperparameters()


def _param(key: str, kind: str) -> str:
    return _FROM_REQUEST[key].format(type=kind)


def _validated(values: dict[str, Any], given: dict[str, Any], kind: str) -> SFTConfig:
    """Validate like `load_config` does, naming the key; the param points at the request field
    the bad value came from (`config.lora.r`, or `suffix`)."""
    try:
        return parse_config(values)
    except ValidationError as exc:
        error = config_error(exc, "request field `config`")
        loc = [str(p) for p in exc.errors()[0]["loc"] if not str(p).startswith(_UNION_ARMS)]
        first = loc[0] if loc else ""
        error.param = _param(first, kind) if first in given else ".".join(["config", *loc])
        raise error from None


def to_config(body: CreateFineTuningJob, hp: Hyperparameters) -> SFTConfig:
    """OpenAI's fields, plus the `config` extension, as one validated config of the method.

    method.type supervised → sft; dpo → dpo (or orpo, kto through config.method); reinforcement
    → grpo with its grader. n_epochs → epochs, batch_size → batch_size, beta → beta,
    learning_rate_multiplier → learning_rate = multiplier × base_learning_rate(config),
    compute_multiplier → answers sampled per prompt. A setting given both ways must agree.
    """
    kind = method_type(body)
    extra = dict(body.config or {})
    for key in _NOT_THROUGH_API:
        if key in extra:
            raise TunesmithError(
                f"config.{key} cannot be set through the API.",
                "Upload the data with files.create and pass its id as training_file or "
                "validation_file.",
                param=f"config.{key}",
            )
    if extra.get("accelerate_config") not in (None, *TRL_CONFIGS):
        # a file would be a path on the server: the API names TRL's shipped configs only
        raise TunesmithError(
            f"config.accelerate_config {extra['accelerate_config']!r} is not one of TRL's "
            f"accelerate configs ({', '.join(TRL_CONFIGS)}).",
            "A config file of your own works from the CLI (tunesmith train --accelerate-config).",
            param="config.accelerate_config",
        )
    # the tunesmith methods `config.method` may pick under OpenAI's method type
    allowed = [name for name, model in METHOD_CONFIGS.items() if model.openai_type == kind]
    extra.setdefault("method", allowed[0])
    if extra["method"] in ("lora", "full"):  # the name tuning had before preference methods
        extra["tuning"] = extra.pop("method")
        extra["method"] = allowed[0]
    if extra["method"] not in allowed:
        raise TunesmithError(
            f"config.method={extra['method']!r} does not fit method.type {kind!r}, which trains "
            f"{' or '.join(allowed)}.",
            "ORPO and KTO are method.type 'dpo' with config.method 'orpo' or 'kto'; GRPO is "
            "method.type 'reinforcement'.",
            param="config.method",
        )
    given: dict[str, Any] = {"model": body.model}
    if body.suffix is not None:
        given["suffix"] = body.suffix
    if body.seed is not None:
        given["seed"] = body.seed
    if hp.n_epochs != "auto":
        given["epochs"] = hp.n_epochs
    if hp.batch_size != "auto":
        given["batch_size"] = hp.batch_size
    if getattr(hp, "beta", "auto") != "auto":
        given["beta"] = hp.beta
    if kind == "reinforcement":
        given["grader"] = _grader(body.method.reinforcement.grader)
        multiplier = hp.compute_multiplier
        if multiplier != "auto":
            samples = GRPOConfig.model_fields["num_generations"].default
            given["num_generations"] = max(2, min(64, round(samples * multiplier)))
    for key, value in given.items():
        if key in extra and extra[key] != value:
            raise _conflict(key, extra[key], value, kind)
    config = _validated({**extra, **given}, given, kind)
    multiplier = hp.learning_rate_multiplier
    if multiplier == "auto":
        return config
    if "learning_rate" in extra:
        raise _conflict("learning_rate", extra["learning_rate"], multiplier, kind)
    base = base_learning_rate(config)
    rate = multiplier * base
    if rate >= 1:
        raise TunesmithError(
            f"learning_rate_multiplier={multiplier} gives a learning rate of {rate:g} "
            f"({multiplier} × {base:g} for {config.method} {config.tuning}); it "
            "must stay below 1.",
            "Multipliers between 0.1 and 10 are the useful range.",
            param=_param("learning_rate", kind),
        )
    return _validated({**extra, **given, "learning_rate": rate}, given, kind)


def _grader(raw: dict[str, Any]) -> dict[str, Any]:
    """The grader checked now, so that a mistake is a 400 naming its field, not a failed job."""
    from tunesmith.graders.spec import grader_json, parse_grader

    return grader_json(parse_grader(raw, "method.reinforcement.grader"))


def _conflict(key: str, in_config: Any, in_request: Any, kind: str) -> TunesmithError:
    return TunesmithError(
        f"config.{key}={in_config!r} contradicts {_param(key, kind)}={in_request!r}.",
        "Give each setting once.",
        param=f"config.{key}",
    )


def check_model(store, name: str) -> None:
    """An unknown model is a bad request here (400 model_not_available), not a missing page."""
    try:
        store.models.resolve(name)
    except NotFoundError as exc:
        raise TunesmithError(
            exc.message, exc.hint, param="model", code="model_not_available"
        ) from None


# --- routes ---------------------------------------------------------------------------------------

After = Annotated[str | None, Query(description="An id from the previous page: list after it.")]


@router.post("/fine_tuning/jobs", response_model=FineTuningJob)
def create_fine_tuning_job(
    body: CreateFineTuningJob, request: Request, store: StoreDep, settings: SettingsDep
) -> dict:
    """Create a job. It answers at once in `validating_files`; the files are checked in the
    background and the job moves to `queued` (or `failed`, naming the file and line)."""
    hp = method_hyperparameters(body)
    config = to_config(body, hp)
    check_model(store, body.model)
    job = create_job(
        store,
        config,
        training_file=body.training_file,
        validation_file=body.validation_file,
        seed=body.seed,
        metadata=body.metadata,
        method=openai_method(config, hp.model_dump()),
    )
    request.app.state.supervisor.validate_soon(job.id)
    return job.to_openai(settings.org)


_METADATA_KEY = re.compile(r"^metadata\[(.+)\]$")
_METADATA_QUERY = {
    "parameters": [
        {
            "name": "metadata",
            "in": "query",
            "required": False,
            "style": "deepObject",
            "explode": True,
            "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            "description": "Only jobs with these metadata pairs: `metadata[key]=value`.",
        }
    ]
}


@router.get("/fine_tuning/jobs", response_model=FineTuningJobList, openapi_extra=_METADATA_QUERY)
def list_fine_tuning_jobs(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 20,
) -> dict:
    """Jobs, newest first."""
    metadata = {
        match.group(1): value
        for key, value in request.query_params.multi_items()
        if (match := _METADATA_KEY.match(key))
    }
    result = store.jobs.list(after=after, limit=limit, metadata=metadata or None)
    return page([job.to_openai(settings.org) for job in result.data], result.has_more)


@router.get("/fine_tuning/jobs/{fine_tuning_job_id}", response_model=FineTuningJob)
def retrieve_fine_tuning_job(
    fine_tuning_job_id: str, store: StoreDep, settings: SettingsDep
) -> dict:
    return store.jobs.get(fine_tuning_job_id).to_openai(settings.org)


@router.post("/fine_tuning/jobs/{fine_tuning_job_id}/cancel", response_model=FineTuningJob)
def cancel_fine_tuning_job(fine_tuning_job_id: str, store: StoreDep, settings: SettingsDep) -> dict:
    """Cancel a job that has not ended; a running one stops at its next step, keeping a
    checkpoint. An ended job gives 400 invalid_job_state."""
    return control.cancel(store, fine_tuning_job_id).to_openai(settings.org)


@router.post("/fine_tuning/jobs/{fine_tuning_job_id}/pause", response_model=FineTuningJob)
def pause_fine_tuning_job(fine_tuning_job_id: str, store: StoreDep, settings: SettingsDep) -> dict:
    """Pause a queued or running job (a running one stops at its next step, with a checkpoint)."""
    return control.pause(store, fine_tuning_job_id).to_openai(settings.org)


@router.post("/fine_tuning/jobs/{fine_tuning_job_id}/resume", response_model=FineTuningJob)
def resume_fine_tuning_job(fine_tuning_job_id: str, store: StoreDep, settings: SettingsDep) -> dict:
    """Put a paused job back in the queue; it continues from its last checkpoint."""
    return control.resume(store, fine_tuning_job_id).to_openai(settings.org)


@router.get("/fine_tuning/jobs/{fine_tuning_job_id}/events", response_model=FineTuningJobEventList)
def list_fine_tuning_events(
    fine_tuning_job_id: str,
    store: StoreDep,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 20,
) -> dict:
    """A job's events, newest first (OpenAI's order; reverse them to read the story)."""
    store.jobs.get(fine_tuning_job_id)
    result = store.events.list(fine_tuning_job_id, after=after, limit=limit)
    return page([event.to_openai() for event in result.data], result.has_more)


@router.get(
    "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
    response_model=FineTuningJobCheckpointList,
)
def list_fine_tuning_checkpoints(
    fine_tuning_job_id: str,
    store: StoreDep,
    after: After = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10,
) -> dict:
    """A job's checkpoints, newest first; each is callable as a model by its name."""
    store.jobs.get(fine_tuning_job_id)
    result = store.checkpoints.list(fine_tuning_job_id, after=after, limit=limit)
    return page([ckpt.to_openai() for ckpt in result.data], result.has_more)
