"""The Modelfile: its Go TEMPLATE renders exactly what the tokenizer's Jinja template renders.

No Ollama binary is available here, so a small renderer of the Go-template subset the translation
emits (text, `{{ .X }}`, `$.X`, if/else on a field or `eq`/`ne`, range over .Messages, trim
markers) stands in for Ollama's. It follows text/template's rules and Ollama's way of filling
`.System` (the first system message's content) and `.Messages` (all messages).
"""

from __future__ import annotations

import re

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.export.ollama import go_template, modelfile, read_chatml

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _tokens(template: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", body) in order, trim markers applied to the neighbouring text."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for match in ACTION.finditer(template):
        text = template[pos : match.start()]
        text = text.lstrip() if trim_next else text
        out.append(("text", text.rstrip() if match.group(1) else text))
        out.append(("action", match.group(2)))
        pos, trim_next = match.end(), bool(match.group(3))
    tail = template[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def _parse(tokens: list[tuple[str, str]], i: int = 0) -> tuple[list, int, str]:
    """A tree of nodes up to the next else/end; returns (nodes, next index, the closing word)."""
    nodes: list = []
    while i < len(tokens):
        kind, body = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", body))
        elif body in ("end", "else"):
            return nodes, i, body
        elif body.startswith(("if ", "range ")):
            word, expr = body.split(" ", 1)
            then, i, closer = _parse(tokens, i)
            otherwise: list = []
            if closer == "else":
                otherwise, i, _ = _parse(tokens, i)
            nodes.append((word, expr, then, otherwise))
        else:
            nodes.append(("print", body))
    return nodes, i, ""


def _value(expr: str, dot, root):
    if expr.startswith('"'):
        return expr.strip('"')
    if expr.startswith(("eq ", "ne ")):
        op, left, right = expr.split(" ", 2)
        same = _value(left, dot, root) == _value(right, dot, root)
        return same if op == "eq" else not same
    scope, field = (root, expr[2:]) if expr.startswith("$.") else (dot, expr[1:])
    return scope[field]


def _run(nodes: list, dot, root) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "print":
            out.append(str(_value(node[1], dot, root)))
        elif node[0] == "if":
            _, expr, then, otherwise = node
            out.append(_run(then if _value(expr, dot, root) else otherwise, dot, root))
        else:  # range: dot becomes each item
            _, expr, body, _ = node
            out += [_run(body, item, root) for item in _value(expr, dot, root)]
    return "".join(out)


def render_go(template: str, messages: list[dict]) -> str:
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    root = {
        "System": system,
        "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages],
    }
    return _run(_parse(_tokens(template))[0], root, root)


CONVERSATIONS = [
    [{"role": "user", "content": "Ship 3 lamps to Oslo"}],
    [{"role": "system", "content": "You extract orders."}, {"role": "user", "content": "2 chairs"}],
    [
        {"role": "system", "content": "Answer in JSON.\nNo prose."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": '{"greeting": "hi"}'},
        {"role": "user", "content": "again, with  spaces \n"},
    ],
    [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
        {"role": "assistant", "content": "four"},
        {"role": "user", "content": ""},
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_the_go_template_renders_like_the_jinja_template(tokenizer, messages):
    jinja = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert render_go(go_template(tokenizer.chat_template), messages) == jinja


def test_the_default_system_prompt_is_read_from_the_template(tokenizer):
    default = read_chatml(tokenizer.chat_template).default_system
    assert default == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_a_chatml_template_without_a_default_translates_too():
    plain = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    assert read_chatml(plain).default_system is None
    messages = CONVERSATIONS[0]
    assert (
        render_go(go_template(plain), messages)
        == "<|im_start|>user\nShip 3 lamps to Oslo<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "template",
    [
        # Llama 3: other markers
        "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}<|eot_id|>{% endfor %}",
        # ChatML that refuses a system message
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}",
        # ChatML that rewrites the content
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | upper }}<|im_end|>\n"
        "{% endfor %}<|im_start|>assistant\n",
    ],
)
def test_templates_that_cannot_be_translated_are_refused(template):
    with pytest.raises(TunesmithError, match="Cannot translate") as info:
        go_template(template)
    assert info.value.code == "template_not_translatable"


def test_the_modelfile_names_file_template_stops_and_system(tokenizer):
    text = modelfile(
        "model.gguf", tokenizer.chat_template, ["<|im_end|>"], "You extract orders.", name="orders"
    )
    lines = text.splitlines()
    assert "# Load it into Ollama from this folder:  ollama create orders -f Modelfile" in lines
    assert "FROM ./model.gguf" in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines
    assert 'SYSTEM """You extract orders."""' in lines
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    assert template == go_template(tokenizer.chat_template)
    assert "SYSTEM" not in modelfile("model.gguf", tokenizer.chat_template, ["<|im_end|>"], None)


def test_a_system_prompt_with_triple_quotes_is_refused(tokenizer):
    with pytest.raises(TunesmithError, match='"""'):
        modelfile("model.gguf", tokenizer.chat_template, ["<|im_end|>"], 'say """hi"""')
