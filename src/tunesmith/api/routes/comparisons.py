"""/v1/comparisons: should you fine-tune? Prompting strategies and fine-tuned models measured
and ranked, as a job with events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from tunesmith.api.deps import StoreDep
from tunesmith.api.protocol.common import page
from tunesmith.api.protocol.comparisons import ComparisonCreate
from tunesmith.errors import NotFoundError, TunesmithError
from tunesmith.store.tasks import COMPARISON, TaskRow

router = APIRouter(tags=["comparisons"])


def _public(row: TaskRow) -> dict:
    """A comparison as the API shows it: the recommendation lifted out of the result."""
    return {
        **row.to_api(COMPARISON),
        "recommendation": (row.result or {}).get("recommendation"),
    }


@router.post("/comparisons")
def create_comparison(body: ComparisonCreate, store: StoreDep) -> dict:
    """Queue a comparison; a worker runs it. Poll it, or read its events."""
    if body.fine_tuned_model is not None and body.fine_tuned_models is not None:
        raise TunesmithError(
            "Give fine_tuned_model or fine_tuned_models, not both.",
            "Put every model in fine_tuned_models.",
            param="fine_tuned_models",
        )
    fine_tuned = body.fine_tuned()
    if not body.train_now and not body.learning_curve and not fine_tuned:
        raise TunesmithError(
            "Give fine_tuned_model (or fine_tuned_models), train_now: true or learning_curve: true.",
            param="fine_tuned_model",
        )
    store.models.resolve(body.model)
    for name in fine_tuned:
        store.models.resolve(name)
    config = {
        "train": store.files.get(body.training_file).path,
        "test": store.files.get(body.test_file).path,
        "model": body.model,
        # As asked: one name stays a name, so clients of the single field see what they sent.
        "fine_tuned": body.fine_tuned_models or body.fine_tuned_model,
        "train_now": body.train_now,
        "shots": body.shots,
        "metric": body.metric,
        "limit": body.limit,
        "max_tokens": body.max_tokens,
        "probes": body.probes,
        "learning_curve": body.learning_curve,
        "seed": body.seed,
    }
    from tunesmith.evals.compare import CompareConfig

    CompareConfig.model_validate(config)
    return _public(store.comparisons.create(config))


@router.get("/comparisons")
def list_comparisons(
    store: StoreDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    result = store.comparisons.list(after=after, limit=limit)
    return page([_public(c) for c in result.data], result.has_more)


@router.get("/comparisons/{comparison_id}")
def get_comparison(comparison_id: str, store: StoreDep) -> dict:
    return _public(store.comparisons.get(comparison_id))


@router.post("/comparisons/{comparison_id}/cancel")
def cancel_comparison(comparison_id: str, store: StoreDep) -> dict:
    """Cancel a queued or running comparison; a running one stops at its next answer (or at its
    fine-tuning job's next step, with --train-now)."""
    row = store.comparisons.move(comparison_id, "cancelled")
    store.comparisons.event(comparison_id, "Comparison cancel requested")
    return _public(row)


@router.delete("/comparisons/{comparison_id}")
def delete_comparison(comparison_id: str, store: StoreDep) -> dict:
    """Delete an ended comparison, its events and its report."""
    store.comparisons.delete(comparison_id)
    return {"id": comparison_id, "object": "comparison.deleted", "deleted": True}


@router.get("/comparisons/{comparison_id}/events")
def comparison_events(
    comparison_id: str,
    store: StoreDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict:
    store.comparisons.get(comparison_id)
    result = store.comparisons.events(comparison_id, after=after, limit=limit)
    return page(result.data, result.has_more)


@router.get("/comparisons/{comparison_id}/report", response_class=HTMLResponse)
def comparison_report(comparison_id: str, store: StoreDep) -> HTMLResponse:
    """The self-contained HTML report, once the comparison has succeeded."""
    row = store.comparisons.get(comparison_id)
    path = Path(row.out_dir) / "report.html"
    if row.status != "succeeded" or not path.exists():
        raise NotFoundError(f"Comparison {comparison_id} has no report yet (it is {row.status}).")
    return HTMLResponse(path.read_text())
