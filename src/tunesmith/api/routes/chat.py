"""POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from tunesmith.api import chat_service
from tunesmith.api.deps import EngineDep, StoreDep
from tunesmith.api.protocol.chat import ChatCompletionRequest

router = APIRouter(tags=["chat"])


@router.post("/chat/completions")
def create_chat_completion(req: ChatCompletionRequest, store: StoreDep, engine: EngineDep):
    """Any base model, fine-tuned model or checkpoint by name; adapters switch per request."""
    spec = store.models.resolve(req.model)
    prep = chat_service.prepare(engine, spec, req)
    if req.stream:
        return StreamingResponse(
            chat_service.stream(engine, prep, req), media_type="text/event-stream"
        )
    return chat_service.respond(engine, prep, req)
