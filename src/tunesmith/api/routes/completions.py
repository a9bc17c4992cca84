"""POST /v1/completions: a raw prompt in, text out (no chat template)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from tunesmith.api.chat_service import sampling_params, sse, usage
from tunesmith.api.deps import EngineDep, StoreDep
from tunesmith.api.protocol.chat import CompletionRequest
from tunesmith.errors import TunesmithError
from tunesmith.ids import new_id

router = APIRouter(tags=["completions"])


@router.post("/completions")
def create_completion(req: CompletionRequest, store: StoreDep, engine: EngineDep):
    spec = store.models.resolve(req.model)
    tokenizer = engine.tokenizer(spec)
    context = engine.context_length(spec)
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    jobs = []
    for p, prompt in enumerate(prompts):
        ids = tokenizer(prompt)["input_ids"]
        if len(ids) >= context:
            raise TunesmithError(
                f"Prompt {p} is {len(ids)} tokens; {spec.name} reads at most {context}.",
                param="prompt",
                code="context_length_exceeded",
            )
        for params in sampling_params(req, min(req.max_tokens, context - len(ids))):
            jobs.append((prompt, ids, engine.submit(spec, ids, params)))
    head = {
        "id": new_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": req.model,
    }
    prompt_tokens = sum(len(ids) for _, ids, _ in jobs[:: req.n])
    if req.stream:
        return StreamingResponse(
            _stream(engine, jobs, head, req, prompt_tokens), media_type="text/event-stream"
        )
    choices, generated = [], 0
    for index, (prompt, _, seq) in enumerate(jobs):
        done = engine.wait(seq)
        generated += done.completion_tokens
        text = (prompt if req.echo else "") + done.text
        choices.append(
            {"text": text, "index": index, "logprobs": None, "finish_reason": done.finish_reason}
        )
    return {**head, "choices": choices, "usage": usage(prompt_tokens, generated)}


def _stream(engine, jobs, head, req: CompletionRequest, prompt_tokens: int) -> Iterator[str]:
    generated = 0
    try:
        for index, (prompt, _, seq) in enumerate(jobs):
            if req.echo:
                yield sse(
                    {
                        **head,
                        "choices": [
                            {
                                "text": prompt,
                                "index": index,
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            for delta in engine.stream(seq):
                choice = {
                    "text": delta.text,
                    "index": index,
                    "logprobs": None,
                    "finish_reason": delta.finish_reason,
                }
                yield sse({**head, "choices": [choice]})
            generated += seq.completion().completion_tokens
        if req.stream_options and req.stream_options.include_usage:
            yield sse({**head, "choices": [], "usage": usage(prompt_tokens, generated)})
        yield sse("[DONE]")
    finally:
        for _, _, seq in jobs:
            seq.cancel()
