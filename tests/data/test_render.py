"""Rendering with the real chat template: which tokens carry the loss."""

from __future__ import annotations

from tunesmith.data.records import Conversation
from tunesmith.data.render import IGNORE, encode, prompt_text


def conv(messages: list[dict], **extra) -> Conversation:
    return Conversation.model_validate({"messages": messages, **extra})


def labelled_text(tokenizer, encoded) -> str:
    return tokenizer.decode([t for t in encoded.labels if t != IGNORE])


def test_only_assistant_tokens_and_their_end_of_turn_carry_loss(tokenizer):
    c = conv(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
        ]
    )
    e = encode(tokenizer, c)
    assert len(e.input_ids) == len(e.labels)
    # The end-of-turn token is learned (else the model never stops); the newline after it is not.
    assert labelled_text(tokenizer, e) == "Paris.<|im_end|>"
    assert e.labels[-1] == IGNORE
    assert tokenizer.decode(e.input_ids).endswith("<|im_start|>assistant\nParis.<|im_end|>\n")


def test_every_assistant_turn_is_learned_except_weight_zero(tokenizer):
    c = conv(
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "one", "weight": 0},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "three"},
        ]
    )
    assert labelled_text(tokenizer, encode(tokenizer, c)) == "two<|im_end|>three<|im_end|>"


def test_prompt_text_ends_with_the_assistant_header(tokenizer):
    c = conv([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    text = prompt_text(tokenizer, c.prompt)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    # Training and serving see the same prefix: the rendered example starts with the prompt.
    assert tokenizer.decode(encode(tokenizer, c).input_ids).startswith(text)


def test_tools_without_template_support_use_hermes_text_both_ways(tokenizer):
    tools = [{"type": "function", "function": {"name": "takeoff", "parameters": {}}}]
    c = conv(
        [
            {"role": "user", "content": "fly"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "takeoff", "arguments": '{"h": 10}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            {"role": "assistant", "content": "Done"},
        ],
        tools=tools,
    )
    e = encode(tokenizer, c)
    text = tokenizer.decode(e.input_ids)
    assert '"name": "takeoff"' in text.split("<|im_end|>")[0]  # tool list in the system prompt
    assert labelled_text(tokenizer, e) == (
        '<tool_call>{"name": "takeoff", "arguments": {"h": 10}}</tool_call><|im_end|>Done<|im_end|>'
    )
    assert "<tool_response>\nok\n</tool_response>" in text


def test_developer_role_renders_as_system(tokenizer):
    c = conv([{"role": "developer", "content": "Rules."}, {"role": "user", "content": "x"}])
    assert prompt_text(tokenizer, c.messages).startswith("<|im_start|>system\nRules.<|im_end|>")


def test_truncation_keeps_ids_and_labels_aligned(tokenizer):
    c = conv([{"role": "user", "content": "word " * 50}, {"role": "assistant", "content": "ok"}])
    e = encode(tokenizer, c, max_length=16)
    assert len(e.input_ids) == len(e.labels) == 16
