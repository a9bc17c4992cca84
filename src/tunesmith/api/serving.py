"""The serving layer chat and text completions share: sampling settings checked against the model,
ids, usage, the whole response or its SSE stream, in-band stream errors, and cancellation when the
client goes away. Each endpoint's service keeps only what differs (prompts in, choices out)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from fastapi import Request
from fastapi.responses import StreamingResponse

from tunesmith.api.protocol.chat import DecodingRequest
from tunesmith.errors import TunesmithError, error_body
from tunesmith.ids import new_id
from tunesmith.infer.engine import EngineFront, Limits, Run
from tunesmith.infer.generation import Completion, Generation
from tunesmith.infer.sampling import SamplingParams
from tunesmith.models.spec import ModelSpec

log = logging.getLogger(__name__)

# A non-streaming request checks this often whether its client is still there; a client that left
# keeps its rows in the batch at most this long.
DISCONNECT_POLL_SECONDS = 0.5

ChoiceChunks = Callable[
    [int, Generation], AsyncIterator[dict]
]  # (index, generation) -> choice deltas


class ClientDisconnected(TunesmithError):
    """The client closed the connection before its answer was ready (nginx's 499)."""

    status = 499
    code = "client_disconnected"


@dataclass
class Work:
    """A request made ready for the engine, whichever endpoint it came through."""

    spec: ModelSpec
    runs: list[Run]  # one engine sequence per choice, in choice-index order
    prompt_tokens: int  # each prompt counted once, however many choices it has


# --- before the engine: settings the model can honour --------------------------------------------
def answer_budget(
    limits: Limits, spec: ModelSpec, prompt_tokens: int, requested: int, what: str, param: str
) -> int:
    """The most tokens an answer may have: what was asked, within the model's context."""
    if prompt_tokens >= limits.context:
        raise TunesmithError(
            f"{what} is {prompt_tokens} tokens; {spec.name} reads at most {limits.context}.",
            "Shorten it.",
            param=param,
            code="context_length_exceeded",
        )
    return min(requested, limits.context - prompt_tokens)


def sampling_params(
    req: DecodingRequest, limits: Limits, max_tokens: int, **extra
) -> list[SamplingParams]:
    """One SamplingParams per choice (n); with a seed, choice i samples with seed + i."""
    base = SamplingParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=list(req.stop or []),
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        logit_bias=_logit_bias(req, limits),
        **extra,
    )
    if req.seed is None:
        return [base] * req.n
    return [replace(base, seed=req.seed + i) for i in range(req.n)]


def _logit_bias(req: DecodingRequest, limits: Limits) -> dict[int, float]:
    """The protocol checked the keys are token ids; here they must be this model's."""
    bias = {int(k): v for k, v in (req.logit_bias or {}).items()}
    outside = sorted(t for t in bias if t >= limits.vocab)
    if outside:
        raise TunesmithError(
            f"logit_bias names token {outside[0]}; {req.model} has token ids 0 to "
            f"{limits.vocab - 1}.",
            param="logit_bias",
        )
    return bias


# --- the answer ----------------------------------------------------------------------------------
def response_head(prefix: str, object_: str, model: str) -> dict:
    """The fields every response and chunk starts with; one id for all chunks of a stream."""
    return {
        "id": new_id(prefix),
        "object": object_,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "tunesmith",
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


async def complete(
    request: Request,
    engine: EngineFront,
    work: Work,
    head: dict,
    choice: Callable[[int, Completion], dict],
) -> dict:
    """The whole response: every choice generated, then `choice(index, completion)` each."""
    seqs = await engine.submit_async(work.spec, work.runs)
    done = await _wait_while_connected(request, engine, seqs)
    return {
        **head,
        "choices": [choice(i, d) for i, d in enumerate(done)],
        "usage": usage(work.prompt_tokens, sum(d.completion_tokens for d in done)),
    }


async def _wait_while_connected(
    request: Request, engine: EngineFront, seqs: list[Generation]
) -> list[Completion]:
    """Every sequence's completion; if the client disconnects first, their rows are freed."""

    async def all_done() -> list[Completion]:
        return [await engine.wait_async(s) for s in seqs]  # they decode together all the same

    waiting = asyncio.ensure_future(all_done())
    try:
        while True:
            finished, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_SECONDS)
            if finished:
                return waiting.result()
            if await request.is_disconnected():
                raise ClientDisconnected("The client disconnected before the answer was ready.")
    finally:
        waiting.cancel()
        for s in seqs:
            s.cancel()


def stream(
    engine: EngineFront, work: Work, head: dict, chunks: ChoiceChunks, include_usage: bool
) -> StreamingResponse:
    """The answer as server-sent events: `chunks(index, sequence)` gives each choice's deltas."""
    events = _events(engine, work, head, chunks, include_usage)
    return StreamingResponse(events, media_type="text/event-stream")


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def _events(
    engine: EngineFront, work: Work, head: dict, chunks: ChoiceChunks, include_usage: bool
) -> AsyncIterator[str]:
    """Choice after choice (they decode together), the usage chunk when asked, then `[DONE]`.

    The sequences are submitted here, not before the response starts, so that a client gone
    before the first byte leaves nothing running; when it leaves later, Starlette cancels this
    generator and `finally` frees the rows.
    """
    extra = {"usage": None} if include_usage else {}
    seqs: list[Generation] = []
    try:
        seqs = await engine.submit_async(work.spec, work.runs)
        for index, seq in enumerate(seqs):
            async for choice in chunks(index, seq):
                yield sse({**head, "choices": [choice], **extra})
        if include_usage:
            generated = sum(s.completion().completion_tokens for s in seqs)
            yield sse({**head, "choices": [], "usage": usage(work.prompt_tokens, generated)})
        yield sse("[DONE]")
    except Exception as exc:  # the status line is out: an error can only go in-band now
        yield sse(_stream_error(exc))
    finally:
        for s in seqs:
            s.cancel()


def _stream_error(exc: Exception) -> dict:
    """OpenAI's error JSON for a failure mid-stream; the SDK raises APIError on it."""
    if isinstance(exc, TunesmithError):
        return exc.to_openai()
    log.exception("generation failed mid-stream", exc_info=exc)
    return error_body(f"Generation failed: {type(exc).__name__}", "server_error", None, None)
