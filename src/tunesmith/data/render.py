"""Conversations to tokens with the model's own chat template, and which tokens carry the loss."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunesmith.data.records import Conversation, Message, TextExample
from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE = -100  # the label value that PyTorch's cross-entropy skips

# Templates without tool support (the built-in SmolLM2's among them) still train and serve tools:
# tunesmith writes them into the prompt in the widespread Hermes form, and infer/ parses them back.
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
TOOL_RESPONSE_OPEN, TOOL_RESPONSE_CLOSE = "<tool_response>", "</tool_response>"
TOOLS_PREAMBLE = (
    "You may call one or more functions to assist with the user query. The functions are listed "
    "inside <tools></tools> as JSON schemas:\n<tools>\n{tools}\n</tools>\nTo call a function, "
    'answer with one JSON object per call: <tool_call>{{"name": "...", "arguments": {{...}}}}'
    "</tool_call>"
)


@dataclass
class Encoded:
    """One tokenized example: `labels[i]` is `input_ids[i]` where the loss applies, else IGNORE."""

    input_ids: list[int]
    labels: list[int]
    # Tokens of the prompt at the start, when it is kept apart (preference and KTO sequences).
    prompt_length: int | None = None

    @property
    def n_loss_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


def template_supports_tools(tokenizer: PreTrainedTokenizerBase) -> bool:
    return "tools" in (tokenizer.chat_template or "")


def tool_call_text(message: Message) -> str:
    """An assistant turn written out as text, tool calls in the Hermes form."""
    parts = [message.content] if message.content else []
    for call in message.tool_calls or []:
        try:
            arguments = json.loads(call.function.arguments)
        except json.JSONDecodeError:
            arguments = call.function.arguments
        payload = json.dumps({"name": call.function.name, "arguments": arguments})
        parts.append(f"{TOOL_CALL_OPEN}{payload}{TOOL_CALL_CLOSE}")
    return "\n".join(parts)


def template_messages(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], tools: list[dict] | None
) -> tuple[list[dict], list[dict] | None]:
    """Messages as the chat template wants them.

    `developer` becomes `system` (few templates know it). When the template has no tool support,
    the tool list moves into the system prompt and tool calls and results become Hermes-style text,
    so that training and serving see the very same text either way.
    """
    native = template_supports_tools(tokenizer)
    out: list[dict] = []
    for m in messages:
        role = "system" if m.role == "developer" else m.role
        if native:
            item: dict = {"role": role, "content": m.content or ""}
            if m.tool_calls:
                item["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {
                            "name": c.function.name,
                            "arguments": _arguments(c.function.arguments),
                        },
                    }
                    for c in m.tool_calls
                ]
            if m.tool_call_id:
                item["tool_call_id"] = m.tool_call_id
            if m.name:
                item["name"] = m.name
            out.append(item)
        elif role == "tool":
            text = f"{TOOL_RESPONSE_OPEN}\n{m.content or ''}\n{TOOL_RESPONSE_CLOSE}"
            out.append({"role": "user", "content": text})
        elif role == "assistant":
            out.append({"role": "assistant", "content": tool_call_text(m)})
        else:
            out.append({"role": role, "content": m.content or ""})
    if tools and not native:
        preamble = TOOLS_PREAMBLE.format(tools="\n".join(json.dumps(t) for t in tools))
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{preamble}"}
        else:
            out.insert(0, {"role": "system", "content": preamble})
        tools = None
    return out, tools


def _arguments(text: str) -> dict | str:
    # Templates with native tool support expect arguments as a mapping, OpenAI sends JSON text.
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, dict) else text


def _render(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict],
    tools: list[dict] | None,
    add_generation_prompt: bool,
) -> str:
    if not tokenizer.chat_template:
        raise TunesmithError(
            f"The tokenizer of {tokenizer.name_or_path!r} has no chat template.",
            "Use an instruction-tuned model, or add a chat_template to its tokenizer_config.json.",
            param="model",
        )
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except TemplateError as exc:  # the template's raise_exception: it refuses this conversation
        raise TunesmithError(
            f"The chat template of {tokenizer.name_or_path!r} refuses these messages: {exc}",
            "Check the roles and their order (some templates allow no system message, or "
            "require user and assistant turns to alternate).",
            param="messages",
        ) from exc


def prompt_text(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], tools: list[dict] | None = None
) -> str:
    """The text a model continues to answer `messages`: the template plus the assistant header."""
    msgs, tools = template_messages(tokenizer, messages, tools)
    return _render(tokenizer, msgs, tools, add_generation_prompt=True)


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], tools: list[dict] | None = None
) -> list[int]:
    return tokenizer(prompt_text(tokenizer, messages, tools), add_special_tokens=False)["input_ids"]


def assistant_spans(
    tokenizer: PreTrainedTokenizerBase, conversation: Conversation
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character spans that carry the loss.

    A span runs from the end of the assistant header to the end of the turn's end-of-turn token
    (whitespace after it excluded): leaving the end-of-turn token out of the loss teaches a model
    never to stop (TRL PR #5988, Unsloth #2296). Spans come from message boundaries of the
    rendered conversation, so any template works without `{% generation %}` markers (TRL #4879).
    Assistant turns with weight 0 carry no loss.
    """
    msgs, tools = template_messages(tokenizer, conversation.messages, conversation.tools)
    full = _render(tokenizer, msgs, tools, add_generation_prompt=False)
    # A tools preamble may have been inserted as a new first message.
    shift = len(msgs) - len(conversation.messages)
    spans: list[tuple[int, int]] = []
    for j, message in enumerate(conversation.messages):
        if message.role != "assistant" or message.weight == 0:
            continue
        i = j + shift
        before = _render(tokenizer, msgs[:i], tools, add_generation_prompt=True) if i else ""
        upto = _render(tokenizer, msgs[: i + 1], tools, add_generation_prompt=False)
        if i and upto.startswith(before) and full.startswith(upto):
            spans.append((len(before), len(upto.rstrip())))
        else:
            spans.append(_find_span(tokenizer, full, msgs[i]["content"], spans, conversation))
    return full, spans


def _find_span(
    tokenizer: PreTrainedTokenizerBase,
    full: str,
    content: str,
    spans: list[tuple[int, int]],
    conversation: Conversation,
) -> tuple[int, int]:
    """Fallback for templates whose renders are not prefixes of each other: find the answer."""
    cursor = spans[-1][1] if spans else 0
    start = full.find(content, cursor)
    if start < 0:
        raise TunesmithError(
            f"Example at line {conversation.line}: the chat template of {tokenizer.name_or_path!r} "
            "changes the assistant's text, so the loss cannot be placed on it.",
            "Use a model whose chat template renders assistant messages verbatim.",
        )
    end = start + len(content)
    eos = tokenizer.eos_token or ""
    rest = full[end:]
    if eos and rest.lstrip(" \n").startswith(eos):
        end += len(rest) - len(rest.lstrip(" \n")) + len(eos)
    return start, end


def encode_text(
    tokenizer: PreTrainedTokenizerBase, example: TextExample, max_length: int | None = None
) -> Encoded:
    """A plain text with no chat template, every token in the loss (as a language model is
    pretrained, and as AutoTrain's `llm` trainer trains). The end-of-text token is appended and
    learned, so that the model learns where a text ends."""
    ids = list(tokenizer(example.text, add_special_tokens=True)["input_ids"])
    if tokenizer.eos_token_id is not None and ids[-1:] != [tokenizer.eos_token_id]:
        ids.append(tokenizer.eos_token_id)
    ids = ids[:max_length] if max_length is not None else ids
    return Encoded(input_ids=ids, labels=list(ids))


def encode(
    tokenizer: PreTrainedTokenizerBase,
    conversation: Conversation | TextExample,
    max_length: int | None = None,
) -> Encoded:
    """Tokens and labels for one conversation (or plain text), truncated to `max_length` tokens
    when given."""
    if isinstance(conversation, TextExample):
        return encode_text(tokenizer, conversation, max_length)
    text, spans = assistant_spans(tokenizer, conversation)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    span_iter = iter(spans)
    span = next(span_iter, None)
    for token_id, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        while span is not None and start >= span[1]:
            span = next(span_iter, None)
        labels.append(token_id if span is not None and span[0] <= start < span[1] else IGNORE)
    ids = list(enc["input_ids"])
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return Encoded(input_ids=ids, labels=labels)


# Tokens decoded before the one shown, so that a decoder that treats a sequence's first token
# apart (SentencePiece drops its leading space) shows each token as it reads inside the text.
_CONTEXT_TOKENS = 4


def token_pieces(tokenizer: PreTrainedTokenizerBase, encoded: Encoded) -> list[tuple[str, bool]]:
    """Each token of `encoded` as the text it adds, with whether it carries the loss.

    The pieces join to the decoded sequence, so a page can show exactly what training reads. A
    character split over several byte tokens is shown on the last of them (the others are "").
    """

    def text(ids: list[int]) -> str:
        return tokenizer.decode(ids, clean_up_tokenization_spaces=False)

    ids = encoded.input_ids
    pieces: list[tuple[str, bool]] = []
    start = 0  # the first token whose text is not shown yet
    for i, label in enumerate(encoded.labels):
        context = max(0, start - _CONTEXT_TOKENS)
        before, upto = text(ids[context:start]), text(ids[context : i + 1])
        if upto.endswith("\ufffd") and i + 1 < len(ids):  # an incomplete UTF-8 character
            pieces.append(("", label != IGNORE))
            continue
        shown = upto[len(before) :] if upto.startswith(before) else text(ids[start : i + 1])
        pieces.append((shown, label != IGNORE))
        start = i + 1
    return pieces
