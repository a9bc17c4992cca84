"""POST /v1/completions: a raw prompt in, text out (no chat template)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tunesmith.api import completions_service
from tunesmith.api.deps import EngineDep, StoreDep
from tunesmith.api.protocol.chat import CompletionRequest

router = APIRouter(tags=["completions"])


@router.post("/completions", response_model=None)
async def create_completion(
    req: CompletionRequest, request: Request, store: StoreDep, engine: EngineDep
) -> dict | StreamingResponse:
    """Any model by name; each prompt is continued as written."""
    return await completions_service.create(request, store, engine, req)
