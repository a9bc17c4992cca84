"""Chat completions: messages (and tools) → prompt tokens and guided decoding; answers → messages
and tool calls. The rest (streaming, usage, ids, errors, cancellation) is the serving layer's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tunesmith.api import serving
from tunesmith.api.protocol.chat import ChatCompletionRequest, ChatMessage, ToolChoiceNamed
from tunesmith.data.records import FunctionCall, Message, ToolCall
from tunesmith.data.render import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    encode_prompt,
    template_supports_tools,
)
from tunesmith.errors import TunesmithError
from tunesmith.infer.engine import EngineFront
from tunesmith.infer.generation import Completion, Generation
from tunesmith.infer.sampling import TokenLogprob
from tunesmith.infer.tools import call_id, parse_tool_calls
from tunesmith.store import Store

DEFAULT_MAX_TOKENS = 2048


async def create(
    request: Request, store: Store, engine: EngineFront, req: ChatCompletionRequest
) -> dict | StreamingResponse:
    """The chat completion, whole or as a stream of chunks."""
    prep = await run_in_threadpool(prepare, store, engine, req)  # blocking: off the loop
    if req.stream:
        head = serving.response_head("chatcmpl-", "chat.completion.chunk", req.model)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunks(index: int, seq: Generation) -> AsyncIterator[dict]:
            return _chunks(engine, prep, req.logprobs, index, seq)

        return serving.stream(engine, prep.work, head, chunks, include_usage)
    head = serving.response_head("chatcmpl-", "chat.completion", req.model)
    return await serving.complete(
        request, engine, prep.work, head, lambda i, done: _choice(prep, i, done, req.logprobs)
    )


def _text(content: str | list[dict] | None, index: int) -> str | None:
    """Content parts flattened to text; anything but text is refused, naming the message."""
    if content is None or isinstance(content, str):
        return content
    parts = []
    for part in content:
        kind, text = part.get("type"), part.get("text", "")
        if kind not in ("text", "input_text"):
            raise TunesmithError(
                f"messages[{index}] has a {kind!r} content part; this model reads text only.",
                param=f"messages[{index}].content",
            )
        if not isinstance(text, str):
            raise TunesmithError(
                f"messages[{index}] has a text part whose text is not a string.",
                param=f"messages[{index}].content",
            )
        parts.append(text)
    return "".join(parts)


def to_messages(messages: list[ChatMessage]) -> list[Message]:
    out = []
    for i, m in enumerate(messages):
        role = "tool" if m.role == "function" else m.role
        out.append(
            Message(
                role=role,
                content=_text(m.content, i),
                name=m.name if role != "tool" else None,
                tool_calls=_calls(m),
                tool_call_id=m.tool_call_id,
            )
        )
    return out


def _calls(m: ChatMessage) -> list[ToolCall] | None:
    """An assistant's earlier calls; a legacy `function_call` becomes one tool call."""
    if m.tool_calls:
        return [
            ToolCall(id=c.id, function=FunctionCall(**c.function.model_dump()))
            for c in m.tool_calls
        ]
    if m.function_call:
        return [ToolCall(id=call_id(), function=FunctionCall(**m.function_call.model_dump()))]
    return None


@dataclass
class Prepared:
    """A chat request made ready for the engine, and what it takes to read the answers."""

    work: serving.Work
    prefix: str  # text forced at the start of the answer (tool_choice), part of the output
    suffix: str  # text that closes a guided tool call once its arguments are complete
    tool_names: set[str] | None  # None: tools are not in play
    tokenizer: object


def _forced_prefix(req: ChatCompletionRequest, hermes: bool) -> str:
    """tool_choice "required" or a named function: start the answer inside a tool call."""
    if not hermes or req.tool_choice in (None, "auto", "none"):
        return ""
    if isinstance(req.tool_choice, ToolChoiceNamed):
        return f'{TOOL_CALL_OPEN}{{"name": "{req.tool_choice.function.name}", "arguments": '
    return f'{TOOL_CALL_OPEN}{{"name": "'


def prepare(store: Store, engine: EngineFront, req: ChatCompletionRequest) -> Prepared:
    """Model by name, messages to prompt tokens, tools to guided decoding; blocking (the store,
    the tokenizer, a model's first load)."""
    spec = store.models.resolve(req.model)
    tokenizer = engine.tokenizer(spec)
    tools = (
        [t.model_dump(exclude_none=True) for t in req.tools or []]
        if req.tool_choice != "none"
        else []
    )
    hermes = bool(tools) and (
        not template_supports_tools(tokenizer) or TOOL_CALL_OPEN in (tokenizer.chat_template or "")
    )
    prefix = _forced_prefix(req, hermes)
    prompt_ids = encode_prompt(tokenizer, to_messages(req.messages), tools or None)
    if prefix:
        prompt_ids += tokenizer(prefix, add_special_tokens=False)["input_ids"]
    limits = engine.limits(spec)
    requested = req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS
    budget = serving.answer_budget(
        limits, spec, len(prompt_ids), requested, "The prompt", "messages"
    )
    params = serving.sampling_params(
        req,
        limits,
        budget,
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs or 0,
        guide=_guide(req, prefix),
        tools=_parameters(tools) if prefix else {},
        tool_named=(
            req.tool_choice.function.name if isinstance(req.tool_choice, ToolChoiceNamed) else None
        ),
    )
    work = serving.Work(spec, [(prompt_ids, p) for p in params], len(prompt_ids))
    names = {t["function"]["name"] for t in tools} if tools else None
    suffix = "}" + TOOL_CALL_CLOSE if prefix else ""
    return Prepared(work, prefix, suffix, names, tokenizer)


def _guide(req: ChatCompletionRequest, prefix: str) -> str | None:
    if prefix:
        return "tool_call"
    if req.response_format is not None and req.response_format.type != "text":
        return "json"  # json_schema too: valid JSON is guaranteed, the schema is not enforced
    return None


def _parameters(tools: list[dict]) -> dict[str, tuple[str, ...] | None]:
    """Each function's declared parameter names; None where the schema does not list them."""
    out: dict[str, tuple[str, ...] | None] = {}
    for tool in tools:
        schema = tool["function"].get("parameters") or {}
        properties = schema.get("properties")
        out[tool["function"]["name"]] = tuple(properties) if isinstance(properties, dict) else None
    return out


def logprobs_json(tokenizer, logprobs: list[TokenLogprob]) -> dict:
    def entry(token_id: int, logprob: float) -> dict:
        text = tokenizer.decode([token_id])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {
        "content": [
            {**entry(lp.token_id, lp.logprob), "top_logprobs": [entry(t, p) for t, p in lp.top]}
            for lp in logprobs
        ],
        "refusal": None,
    }


def _choice(prep: Prepared, index: int, done: Completion, logprobs: bool) -> dict:
    text = prep.prefix + done.text + (prep.suffix if done.finish_reason == "stop" else "")
    message: dict = {"role": "assistant", "content": text, "refusal": None}
    finish = done.finish_reason
    if prep.tool_names is not None:
        content, calls = parse_tool_calls(text, prep.tool_names)
        if calls:
            message = {
                "role": "assistant",
                "content": content,
                "refusal": None,
                "tool_calls": calls,
            }
            finish = "tool_calls"
    return {
        "index": index,
        "message": message,
        "logprobs": logprobs_json(prep.tokenizer, done.logprobs) if logprobs else None,
        "finish_reason": finish,
    }


async def _chunks(
    engine: EngineFront, prep: Prepared, logprobs: bool, index: int, seq: Generation
) -> AsyncIterator[dict]:
    """One choice's chunks: the role, then content deltas (or the tool calls, known only once
    the answer is whole), then the finish reason."""
    yield _delta(index, {"role": "assistant", "content": "", "refusal": None})
    if prep.tool_names is not None:
        for chunk in _tool_chunks(prep, index, await engine.wait_async(seq)):
            yield chunk
        return
    async for delta in engine.stream_async(seq):
        lp = logprobs_json(prep.tokenizer, delta.logprobs) if logprobs else None
        if delta.text or lp:
            yield _delta(index, {"content": delta.text}, logprobs=lp)
        if delta.finish_reason:
            yield _delta(index, {}, delta.finish_reason)


def _delta(
    index: int, delta: dict, finish: str | None = None, logprobs: dict | None = None
) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def _tool_chunks(prep: Prepared, index: int, done: Completion) -> Iterator[dict]:
    choice = _choice(prep, index, done, False)
    calls = choice["message"].get("tool_calls")
    if not calls:
        if choice["message"]["content"]:
            yield _delta(index, {"content": choice["message"]["content"]})
        yield _delta(index, {}, choice["finish_reason"])
        return
    for i, call in enumerate(calls):
        function = call["function"]
        head = {"index": i, "id": call["id"], "type": "function"}
        yield _delta(index, {"tool_calls": [{**head, "function": {**function, "arguments": ""}}]})
        arguments = {"arguments": function["arguments"]}
        yield _delta(index, {"tool_calls": [{"index": i, "function": arguments}]})
    yield _delta(index, {}, "tool_calls")
