"""An Ollama Modelfile, its TEMPLATE translated from the model's Jinja chat template (ChatML family)."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.errors import TunesmithError

# Probe texts rendered through the Jinja template: unusual enough never to occur in a real template,
# so finding them again tells exactly where the template puts a message's role and content.
PROBE_SYSTEM, PROBE_USER, PROBE_ASSISTANT = (
    "\x01system-text\x01",
    "\x01user-text\x01",
    "\x01answer\x01",
)

# Ollama's own templates use `.Messages`: it then passes the system prompt (the request's, else the
# Modelfile's SYSTEM) both as `.System` and as the first system message, so the range skips system
# messages and the header prints `.System` once, or the template's default when there is none.
GO_CHATML = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n"
    "{{ else }}__DEFAULT__{{ end }}"
    '{{- range .Messages }}{{ if ne .Role "system" }}<|im_start|>{{ .Role }}\n'
    "{{ .Content }}<|im_end|>\n{{ end }}{{ end }}<|im_start|>assistant\n"
)


@dataclass(frozen=True)
class ChatML:
    """What the translation needs to know of a ChatML template: its default system prompt."""

    default_system: str | None


def render_jinja(template: str, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """Render a chat template the way transformers does (same environment options)."""
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt
        )
    except TemplateError as exc:
        raise untranslatable(f"rendering it failed ({exc})") from exc


def chatml_turn(role: str, content: str) -> str:
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


def read_chatml(template: str) -> ChatML:
    """Check by rendering that `template` is plain ChatML, and find its default system prompt.

    Rendering probes rather than parsing the Jinja: whatever the template's code looks like, only
    its output has to match, turn for turn, what the Go template will produce.
    """
    turns = [
        {"role": "user", "content": PROBE_USER},
        {"role": "assistant", "content": PROBE_ASSISTANT},
        {"role": "user", "content": PROBE_USER},
    ]
    body = "".join(chatml_turn(t["role"], t["content"]) for t in turns) + "<|im_start|>assistant\n"
    with_system = render_jinja(template, [{"role": "system", "content": PROBE_SYSTEM}, *turns])
    if with_system != chatml_turn("system", PROBE_SYSTEM) + body:
        raise untranslatable("it does not render ChatML turns (<|im_start|>role … <|im_end|>)")
    without = render_jinja(template, turns)
    if without == body:
        return ChatML(default_system=None)
    prefix = without.removesuffix(body)
    start, end = "<|im_start|>system\n", "<|im_end|>\n"
    if prefix == without or not (prefix.startswith(start) and prefix.endswith(end)):
        raise untranslatable("it adds something other than a default system turn")
    return ChatML(default_system=prefix[len(start) : -len(end)])


def go_template(chat_template_jinja: str) -> str:
    """The Jinja chat template in Ollama's Go-template syntax; refused when it is not ChatML."""
    chatml = read_chatml(chat_template_jinja)
    default = ""
    if chatml.default_system is not None:
        default = chatml_turn("system", chatml.default_system)
    return GO_CHATML.replace("__DEFAULT__", default)


def untranslatable(why: str) -> TunesmithError:
    return TunesmithError(
        f"Cannot translate this model's chat template to an Ollama TEMPLATE: {why}.",
        "Only the ChatML family (SmolLM2, Qwen) is translated. Export with --format gguf and "
        "write the Modelfile's TEMPLATE by hand, or serve the GGUF with llama.cpp, which reads "
        "the Jinja template stored in the file.",
        param="format",
        code="template_not_translatable",
    )


def quoted(text: str, what: str) -> str:
    """A Modelfile value in triple quotes, which allow newlines but cannot hold triple quotes."""
    if '"""' in text:
        raise TunesmithError(
            f'The {what} contains """, which a Modelfile cannot quote.',
            f"Remove the triple quotes from the {what}.",
            param=what,
        )
    return f'"""{text}"""'


def modelfile(
    gguf_name: str,
    chat_template_jinja: str,
    stop_tokens: list[str],
    system: str | None,
    *,
    name: str = "my-model",
) -> str:
    """The Modelfile next to `gguf_name`. Ollama's template detection from a GGUF is unreliable
    (ollama/ollama#6371, #8982), so TEMPLATE and every stop token are written out."""
    lines = [
        f"# Load it into Ollama from this folder:  ollama create {name} -f Modelfile",
        f"# then:  ollama run {name}",
        f"FROM ./{gguf_name}",
        f"TEMPLATE {quoted(go_template(chat_template_jinja), 'chat template')}",
    ]
    lines += [f'PARAMETER stop "{token}"' for token in stop_tokens]
    if system is not None:
        lines.append(f"SYSTEM {quoted(system, 'system prompt')}")
    return "\n".join(lines) + "\n"
