"""Text completions: raw prompts (no chat template) → tokens; answers → text, echo and the legacy
`logprobs` shape. The rest (streaming, usage, ids, errors, cancellation) is the serving layer's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tunesmith.api import serving
from tunesmith.api.protocol.chat import CompletionRequest
from tunesmith.infer.engine import EngineFront
from tunesmith.infer.generation import Completion, Generation
from tunesmith.infer.sampling import TokenLogprob
from tunesmith.store import Store


@dataclass
class Prepared:
    work: serving.Work
    prompts: list[str]  # the prompt of each choice, for echo
    tokenizer: object


async def create(
    request: Request, store: Store, engine: EngineFront, req: CompletionRequest
) -> dict | StreamingResponse:
    """The text completion, whole or as a stream of chunks; choices are prompt by prompt, n each."""
    prep = await run_in_threadpool(prepare, store, engine, req)  # blocking: off the loop
    head = serving.response_head("cmpl-", "text_completion", req.model)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunks(index: int, seq: Generation) -> AsyncIterator[dict]:
            return _chunks(engine, prep, req, index, seq)

        return serving.stream(engine, prep.work, head, chunks, include_usage)
    return await serving.complete(
        request, engine, prep.work, head, lambda i, done: _choice(prep, req, i, done)
    )


def prepare(store: Store, engine: EngineFront, req: CompletionRequest) -> Prepared:
    """Model by name, each prompt tokenized and checked against it; blocking (the store, the
    tokenizer, a model's first load)."""
    spec = store.models.resolve(req.model)
    tokenizer = engine.tokenizer(spec)
    limits = engine.limits(spec)
    runs, prompts, prompt_tokens = [], [], 0
    for p, prompt in enumerate(req.prompt):
        ids = tokenizer(prompt)["input_ids"]
        budget = serving.answer_budget(
            limits, spec, len(ids), req.max_tokens, f"Prompt {p}", "prompt"
        )
        params = serving.sampling_params(
            req,
            limits,
            budget,
            logprobs=req.logprobs is not None,
            top_logprobs=req.logprobs or 0,
        )
        runs += [(ids, one) for one in params]
        prompts += [prompt] * len(params)
        prompt_tokens += len(ids)
    return Prepared(serving.Work(spec, runs, prompt_tokens), prompts, tokenizer)


def _choice(prep: Prepared, req: CompletionRequest, index: int, done: Completion) -> dict:
    echoed = prep.prompts[index] if req.echo else ""
    logprobs = None
    if req.logprobs is not None:
        logprobs, _ = legacy_logprobs(prep.tokenizer, done.logprobs, len(echoed))
    return _text(index, echoed + done.text, logprobs, done.finish_reason)


async def _chunks(
    engine: EngineFront, prep: Prepared, req: CompletionRequest, index: int, seq: Generation
) -> AsyncIterator[dict]:
    """One choice's chunks: the echoed prompt first when asked, then the text as it comes, each
    chunk with the logprobs of its own tokens."""
    offset = 0  # where the next token starts in this choice's text (the legacy text_offset)
    if req.echo:
        yield _text(index, prep.prompts[index], None, None)
        offset = len(prep.prompts[index])
    async for delta in engine.stream_async(seq):
        logprobs = None
        if req.logprobs is not None:
            logprobs, offset = legacy_logprobs(prep.tokenizer, delta.logprobs, offset)
        yield _text(index, delta.text, logprobs, delta.finish_reason)


def _text(index: int, text: str, logprobs: dict | None, finish: str | None) -> dict:
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}


def legacy_logprobs(tokenizer, logprobs: list[TokenLogprob], offset: int) -> tuple[dict, int]:
    """OpenAI's legacy completions shape, and the offset after the last token.

    `top_logprobs` holds the N likeliest tokens and always the chosen one (so up to N + 1, as
    OpenAI documents); tokens that decode to the same text keep the likelier logprob.
    `text_offset` counts characters from the start of the choice's text (after an echo).
    """
    out: dict[str, list] = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    for lp in logprobs:
        token = tokenizer.decode([lp.token_id])
        top: dict[str, float] = {}
        for token_id, logprob in lp.top:  # likeliest first: setdefault keeps the likelier
            top.setdefault(tokenizer.decode([token_id]), logprob)
        top.setdefault(token, lp.logprob)
        out["tokens"].append(token)
        out["token_logprobs"].append(lp.logprob)
        out["top_logprobs"].append(top)
        out["text_offset"].append(offset)
        offset += len(token)
    return out, offset
