"""POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tunesmith.api import chat_service
from tunesmith.api.deps import EngineDep, StoreDep
from tunesmith.api.protocol.chat import ChatCompletionRequest

router = APIRouter(tags=["chat"])


@router.post("/chat/completions", response_model=None)
async def create_chat_completion(
    req: ChatCompletionRequest, request: Request, store: StoreDep, engine: EngineDep
) -> dict | StreamingResponse:
    """Any base model, fine-tuned model or checkpoint by name; adapters switch per request."""
    return await chat_service.create(request, store, engine, req)
