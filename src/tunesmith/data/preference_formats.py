"""TRL's preference and unpaired-preference (KTO) rows, and column-mapped pairs, to records.

TRL's formats (https://huggingface.co/docs/trl/dataset_formats): each field is either text
("standard") or a list of messages ("conversational"). A standard prompt becomes one user turn
and a standard answer one assistant turn, as prompt/completion rows do.
"""

from __future__ import annotations

from typing import Any

from tunesmith.data.issues import RowIssues, type_name
from tunesmith.data.openai_format import answers, parse_message, parse_tools
from tunesmith.data.other_formats import mapped_text, not_an_object
from tunesmith.data.pairs import check_prompt_end, make_pair
from tunesmith.data.records import Conversation, KTOExample, Message, PreferencePair, Record
from tunesmith.errors import TunesmithError

PREFERENCE_ROLES = ("system", "prompt", "chosen", "rejected")
TRL_FIELDS = ("chosen", "rejected")
# Tables (CSV) cannot hold a boolean: a KTO label cell may be written as text.
LABEL_TEXT = {"true": True, "false": False}


def trl_preference_record(row: Any, issues: RowIssues) -> PreferencePair | None:
    """{"prompt"?, "chosen", "rejected"}: text or messages; without a prompt, it is implicit."""
    if not_an_object(row, issues, '{"prompt": ..., "chosen": ..., "rejected": ...}'):
        return None
    tools = parse_tools(row, issues, "")
    if row.get("prompt") is None:
        return implicit_pair(row, issues, tools)
    prompt = prompt_field(row, "prompt", issues)
    chosen = answer_field(row, "chosen", issues)
    rejected = answer_field(row, "rejected", issues)
    if issues.failed or prompt is None or chosen is None or rejected is None:
        return None
    conversation = Conversation(messages=prompt, tools=tools, line=issues.line)
    return make_pair(conversation, chosen, rejected, issues, fields=TRL_FIELDS)


def prompt_field(row: dict, key: str, issues: RowIssues) -> list[Message] | None:
    """A prompt: text (one user turn) or messages ending with the user's turn."""
    value = row.get(key)
    if isinstance(value, str):
        if not value.strip():
            issues.add("missing_content", key, f"The {key} is empty; write it.")
            return None
        return [Message(role="user", content=value)]
    if not isinstance(value, list) or not value:
        kind = "missing_field" if value is None else "invalid_field"
        issues.add(
            kind,
            key,
            f"{key} must be text or a non-empty list of messages, not {type_name(value)}.",
        )
        return None
    legacy: list[str] = []
    parsed = [parse_message(m, f"{key}[{i}]", issues, legacy) for i, m in enumerate(value)]
    if any(m is None for m in parsed):
        return None
    messages = [m for m in parsed if m is not None]
    check_prompt_end(messages, f"{key}[{len(messages) - 1}].role", issues)
    return messages


def answer_field(row: dict, key: str, issues: RowIssues) -> list[Message] | None:
    """An answer: text (one assistant turn) or a list of assistant messages."""
    value = row.get(key)
    if not isinstance(value, str):
        return answers(row, key, issues)  # reports a missing side at its field
    if not value.strip():
        issues.add("empty_assistant_answer", key, f"The {key} answer is empty; write it.")
        return None
    return [Message(role="assistant", content=value)]


def implicit_pair(row: dict, issues: RowIssues, tools: list[dict] | None) -> PreferencePair | None:
    """{"chosen", "rejected"} as two whole conversations: their shared start is the prompt."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    for key, value in (("chosen", chosen), ("rejected", rejected)):
        if value is None:
            issues.add(
                "missing_field",
                key,
                f"The pair has no {key!r}; add it (and a 'prompt', or make "
                "chosen and rejected whole conversations that share the prompt).",
            )
    if chosen is None or rejected is None:
        return None
    if isinstance(chosen, str) and isinstance(rejected, str):
        split = implicit_text(chosen, rejected, issues)
    elif isinstance(chosen, list) and isinstance(rejected, list):
        split = implicit_messages(chosen, rejected, issues)
    else:
        issues.add(
            "invalid_field",
            "rejected",
            f"chosen is {type_name(chosen)} and rejected {type_name(rejected)}; without a prompt "
            "both must be text or both lists of messages.",
        )
        return None
    if split is None or issues.failed:
        return None
    prompt, chosen_answer, rejected_answer = split
    conversation = Conversation(messages=prompt, tools=tools, line=issues.line)
    return make_pair(conversation, chosen_answer, rejected_answer, issues, fields=TRL_FIELDS)


def implicit_text(
    chosen: str, rejected: str, issues: RowIssues
) -> tuple[list[Message], list[Message], list[Message]] | None:
    """Standard implicit prompt: the shared start of the two texts, cut back to a word boundary.

    TRL cuts at the first differing character, which can split a word ("The ca" + "t"/"r");
    cutting at the last whitespace keeps whole words on both sides. The space stays with the
    answers, as in TRL's examples (" blue." / " green.").
    """
    if chosen == rejected:
        issues.add(
            "identical_preference", "rejected", "chosen and rejected are the same text; change one."
        )
        return None
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    cut = max(chosen.rfind(space, 0, n) for space in " \n\t")
    if cut <= 0 or not chosen[:cut].strip():
        issues.add(
            "no_shared_prompt",
            "chosen",
            "chosen and rejected share no opening words, so no prompt can be found; add a "
            "'prompt' field.",
        )
        return None
    for key, text in (("chosen", chosen), ("rejected", rejected)):
        if not text[cut:].strip():
            issues.add(
                "empty_assistant_answer", key, f"{key} has no answer after the shared prompt."
            )
    if issues.failed:
        return None
    return (
        [Message(role="user", content=chosen[:cut])],
        [Message(role="assistant", content=chosen[cut:])],
        [Message(role="assistant", content=rejected[cut:])],
    )


def implicit_messages(
    chosen: list, rejected: list, issues: RowIssues
) -> tuple[list[Message], list[Message], list[Message]] | None:
    """Conversational implicit prompt: the messages both conversations share, as TRL splits them."""
    sides = []
    for key, value in (("chosen", chosen), ("rejected", rejected)):
        legacy: list[str] = []
        parsed = [parse_message(m, f"{key}[{i}]", issues, legacy) for i, m in enumerate(value)]
        sides.append([m for m in parsed if m is not None])
    if issues.failed:
        return None
    first, second = sides
    n = 0
    while n < min(len(first), len(second)) and first[n] == second[n]:
        n += 1
    if first == second:
        issues.add(
            "identical_preference", "rejected", "chosen and rejected are the same conversation."
        )
        return None
    if n == 0:
        issues.add(
            "no_shared_prompt",
            "chosen[0]",
            "chosen and rejected start differently, so they share no prompt; start both with the "
            "same prompt messages, or add a 'prompt' field.",
        )
        return None
    check_prompt_end(first[:n], f"chosen[{n - 1}].role", issues)
    for key, side in (("chosen", first), ("rejected", second)):
        if n == len(side):
            issues.add(
                "missing_field", key, f"{key} has nothing after the shared prompt: no answer."
            )
        for i, message in enumerate(side[n:], start=n):
            if message.role != "assistant":
                issues.add(
                    "invalid_field",
                    f"{key}[{i}].role",
                    f"After the shared prompt, {key} must hold assistant messages only, not "
                    f"{message.role!r}.",
                )
    if issues.failed:
        return None
    return first[:n], first[n:], second[n:]


def kto_record(row: Any, issues: RowIssues) -> KTOExample | None:
    """{"prompt", "completion", "label": true|false}: TRL's unpaired preference format."""
    if not_an_object(row, issues, '{"prompt": ..., "completion": ..., "label": true}'):
        return None
    tools = parse_tools(row, issues, "")
    prompt = prompt_field(row, "prompt", issues)
    completion = answer_field(row, "completion", issues)
    label = kto_label(row.get("label"), issues)
    if issues.failed or prompt is None or completion is None or label is None:
        return None
    return KTOExample(
        input=Conversation(messages=prompt, tools=tools, line=issues.line),
        output=completion,
        label=label,
        line=issues.line,
    )


def kto_label(value: Any, issues: RowIssues) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in LABEL_TEXT:
        return LABEL_TEXT[value.strip().lower()]
    if value is None:
        issues.add("missing_field", "label", "The example has no 'label'; add true or false.")
    else:
        issues.add(
            "invalid_label",
            "label",
            f"label must be true (a desirable answer) or false (an undesirable one), not "
            f"{value!r}.",
        )
    return None


def is_label(value: Any) -> bool:
    """Whether a value reads as a KTO label: what tells KTO rows from prompt/completion ones."""
    return isinstance(value, bool) or (
        isinstance(value, str) and value.strip().lower() in LABEL_TEXT
    )


def preference_columns_record(
    row: Any, issues: RowIssues, mapping: dict[str, str]
) -> PreferencePair | None:
    """A table row through {"system"?, "prompt", "chosen", "rejected"} to columns or literals."""
    if not_an_object(row, issues, "a table row"):
        return None
    texts: dict[str, str] = {}
    for role in PREFERENCE_ROLES:
        source = mapping.get(role)
        if source is None:
            continue
        text = mapped_text(row, source)
        if text and text.strip():
            texts[role] = text
        elif role != "system":
            what = "the prompt" if role == "prompt" else f"the {role} answer"
            issues.add(
                "missing_field",
                source,
                f"The {source!r} cell ({what}) is empty; fill it or drop the row.",
            )
    if issues.failed:
        return None
    system = [Message(role="system", content=texts["system"])] if "system" in texts else []
    prompt = Conversation(
        messages=[*system, Message(role="user", content=texts["prompt"])], line=issues.line
    )
    return make_pair(
        prompt,
        [Message(role="assistant", content=texts["chosen"])],
        [Message(role="assistant", content=texts["rejected"])],
        issues,
        fields=(mapping["chosen"], mapping["rejected"]),
    )


def to_kto(records: list[Record]) -> list[KTOExample]:
    """Records for KTO: each pair gives a desirable and an undesirable example; KTO examples pass.

    Both examples of a pair keep the pair's line, so problems still point at it.
    """
    out: list[KTOExample] = []
    for record in records:
        if isinstance(record, KTOExample):
            out.append(record)
        elif isinstance(record, PreferencePair):
            for answer, label in (
                (record.preferred_output, True),
                (record.non_preferred_output, False),
            ):
                out.append(
                    KTOExample(input=record.input, output=answer, label=label, line=record.line)
                )
        else:
            raise TunesmithError(
                f"The example at line {record.line} is not a preference example; KTO trains on "
                "preference pairs or on examples labelled desirable or undesirable.",
                'Give rows like {"prompt": ..., "completion": ..., "label": true}, or pairs.',
                param="training_file",
            )
    return out
