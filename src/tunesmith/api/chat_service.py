"""Chat completions: OpenAI request → prompt tokens → engine → OpenAI response or SSE chunks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from tunesmith.api.protocol.chat import (
    ChatCompletionRequest,
    ChatMessage,
    DecodingRequest,
    ToolChoiceNamed,
)
from tunesmith.data.records import FunctionCall, Message, ToolCall
from tunesmith.data.render import (
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    encode_prompt,
    template_supports_tools,
)
from tunesmith.errors import TunesmithError
from tunesmith.ids import new_id
from tunesmith.infer.engine import Engine
from tunesmith.infer.sampling import SamplingParams, TokenLogprob
from tunesmith.infer.sequence import Completion, Sequence
from tunesmith.infer.tools import call_id, parse_tool_calls
from tunesmith.models.spec import ModelSpec

DEFAULT_MAX_TOKENS = 2048


def _text(content: str | list[dict] | None, index: int) -> str | None:
    """Content parts flattened to text; anything but text is refused, naming the message."""
    if content is None or isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") not in ("text", "input_text"):
            raise TunesmithError(
                f"messages[{index}] has a {part.get('type')!r} content part; this model reads text only.",
                param=f"messages[{index}].content",
            )
        parts.append(part.get("text", ""))
    return "".join(parts)


def to_messages(messages: list[ChatMessage]) -> list[Message]:
    out = []
    for i, m in enumerate(messages):
        calls = None
        raw_calls = m.tool_calls or (
            [{"id": call_id(), "function": m.function_call}] if m.function_call else None
        )
        if raw_calls:
            calls = [
                ToolCall(id=c.get("id"), function=FunctionCall(**c["function"])) for c in raw_calls
            ]
        role = "tool" if m.role == "function" else m.role
        out.append(
            Message(
                role=role,
                content=_text(m.content, i),
                name=m.name if role != "tool" else None,
                tool_calls=calls,
                tool_call_id=m.tool_call_id,
            )
        )
    return out


@dataclass
class Prepared:
    """A request made ready for the engine."""

    spec: ModelSpec
    prompt_ids: list[int]
    params: list[SamplingParams]  # one per choice
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


def prepare(engine: Engine, spec: ModelSpec, req: ChatCompletionRequest) -> Prepared:
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
    context = engine.context_length(spec)
    if len(prompt_ids) >= context:
        raise TunesmithError(
            f"The prompt is {len(prompt_ids)} tokens; {spec.name} reads at most {context}.",
            "Shorten the messages.",
            param="messages",
            code="context_length_exceeded",
        )
    limit = req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS
    params = sampling_params(
        req,
        min(limit, context - len(prompt_ids)),
        logprobs=req.logprobs,
        top_logprobs=req.top_logprobs or 0,
        guide=_guide(req, prefix),
        tools=_parameters(tools) if prefix else {},
        tool_named=(
            req.tool_choice.function.name if isinstance(req.tool_choice, ToolChoiceNamed) else None
        ),
    )
    names = {t["function"]["name"] for t in tools} if tools else None
    suffix = "}" + TOOL_CALL_CLOSE if prefix else ""
    return Prepared(spec, prompt_ids, params, prefix, suffix, names, tokenizer)


def sampling_params(req: DecodingRequest, max_tokens: int, **extra) -> list[SamplingParams]:
    """One SamplingParams per choice (n); with a seed, choice i samples with seed + i."""
    base = SamplingParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=list(req.stop or []),
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        logit_bias={int(k): v for k, v in (req.logit_bias or {}).items()},
        **extra,
    )
    if req.seed is None:
        return [base] * req.n
    return [replace(base, seed=req.seed + i) for i in range(req.n)]


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


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def submit(engine: Engine, prep: Prepared) -> list[Sequence]:
    return [engine.submit(prep.spec, prep.prompt_ids, p) for p in prep.params]


def respond(engine: Engine, prep: Prepared, req: ChatCompletionRequest) -> dict:
    seqs = submit(engine, prep)
    try:
        done = [engine.wait(s) for s in seqs]
    finally:
        for s in seqs:
            s.cancel()
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": "tunesmith",
        "choices": [_choice(prep, i, d, req.logprobs) for i, d in enumerate(done)],
        "usage": usage(len(prep.prompt_ids), sum(d.completion_tokens for d in done)),
    }


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def stream(engine: Engine, prep: Prepared, req: ChatCompletionRequest) -> Iterator[str]:
    """SSE chunks: role first, then content (or tool-call) deltas, a finish chunk per choice,
    the usage chunk when asked, then `[DONE]`. A failure mid-stream is sent as an error event."""
    seqs = submit(engine, prep)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    head = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": "tunesmith",
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict, finish: str | None = None, logprobs=None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return sse({**head, "choices": [choice], **extra})

    try:
        completion_tokens = 0
        for index, seq in enumerate(seqs):
            yield chunk(index, {"role": "assistant", "content": "", "refusal": None})
            if prep.tool_names is not None:  # tool calls are known only once the answer is whole
                yield from _tool_chunks(engine, prep, seq, index, chunk)
            else:
                for delta in engine.stream(seq):
                    lp = logprobs_json(prep.tokenizer, delta.logprobs) if req.logprobs else None
                    if delta.text or lp:
                        yield chunk(index, {"content": delta.text}, logprobs=lp)
                    if delta.finish_reason:
                        yield chunk(index, {}, delta.finish_reason)
            completion_tokens += seq.completion().completion_tokens
        if include_usage:
            yield sse(
                {**head, "choices": [], "usage": usage(len(prep.prompt_ids), completion_tokens)}
            )
        yield sse("[DONE]")
    except TunesmithError as exc:
        yield sse(exc.to_openai())
    except Exception as exc:  # the stream has started: report in-band, the SDK raises APIError
        yield sse(
            {
                "error": {
                    "message": f"generation failed: {exc}",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        )
    finally:
        for s in seqs:
            s.cancel()  # a client that went away frees its batch rows


def _tool_chunks(engine: Engine, prep: Prepared, seq: Sequence, index: int, chunk) -> Iterator[str]:
    done = engine.wait(seq)
    choice = _choice(prep, index, done, False)
    calls = choice["message"].get("tool_calls")
    if not calls:
        if choice["message"]["content"]:
            yield chunk(index, {"content": choice["message"]["content"]})
        yield chunk(index, {}, choice["finish_reason"])
        return
    for i, call in enumerate(calls):
        function = call["function"]
        yield chunk(
            index,
            {
                "tool_calls": [
                    {
                        "index": i,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": function["name"], "arguments": ""},
                    }
                ]
            },
        )
        yield chunk(
            index, {"tool_calls": [{"index": i, "function": {"arguments": function["arguments"]}}]}
        )
    yield chunk(index, {}, "tool_calls")
