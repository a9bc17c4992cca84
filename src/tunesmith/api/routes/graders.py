"""/v1/fine_tuning/alpha/graders: run a grader on one sample, or validate one (OpenAI's alpha).

Model graders judge with a served model (the same engine as chat); python graders run in the
graders sandbox, a worker process that lives for the request."""

from __future__ import annotations

from fastapi import APIRouter

from tunesmith.api.deps import EngineDep, StoreDep
from tunesmith.api.protocol.graders import (
    GraderRunRequest,
    GraderRunResponse,
    GraderValidateRequest,
    GraderValidateResponse,
)
from tunesmith.errors import TunesmithError
from tunesmith.graders.model import engine_judge
from tunesmith.graders.run import grade, make_sample
from tunesmith.graders.spec import Grader, grader_json, model_graders, parse_grader
from tunesmith.store import Store

router = APIRouter(prefix="/fine_tuning/alpha/graders", tags=["graders"])


def _checked(raw: dict, store: Store) -> Grader:
    """The grader parsed, and every judge model it names known: an unknown model is the
    client's mistake (the store's 404, naming the field), not a failed sample."""
    grader = parse_grader(raw)
    for key, part in model_graders(grader):
        try:
            store.models.resolve(part.model)
        except TunesmithError as exc:
            exc.param = f"grader.graders.{key}.model" if key else "grader.model"
            raise
    return grader


@router.post("/run")
def run_grader(body: GraderRunRequest, store: StoreDep, engine: EngineDep) -> GraderRunResponse:
    """Grade `model_sample` (with `item`) as fine-tuning would: the reward and what went wrong."""
    grader = _checked(body.grader, store)
    judge = engine_judge(engine, store.models.resolve)
    # A plain def: FastAPI runs it on a worker thread, which waits on the engine and the
    # sandbox without holding the event loop.
    result = grade(grader, make_sample(body.model_sample), body.item, judge=judge)
    return GraderRunResponse.model_validate(
        {
            "reward": result.reward,
            "metadata": {
                "name": result.name,
                "type": result.type,
                "errors": result.errors.model_dump(),
                "execution_time": result.execution_time,
                "scores": result.scores,
                "token_usage": result.total_tokens,
                "sampled_model_name": None,
            },
            "sub_rewards": result.sub_rewards,
            "model_grader_token_usage_per_model": result.token_usage,
        }
    )


@router.post("/validate")
def validate_grader(body: GraderValidateRequest, store: StoreDep) -> GraderValidateResponse:
    """The grader back when it is valid; a 400 whose `param` names the first mistake if not."""
    return GraderValidateResponse(grader=grader_json(_checked(body.grader, store)))
