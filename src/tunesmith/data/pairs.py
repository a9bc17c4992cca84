"""The rules every preference pair obeys, whatever file it came from: OpenAI's DPO shape."""

from __future__ import annotations

from tunesmith.data.issues import RowIssues
from tunesmith.data.records import Conversation, Message, PreferencePair

# A prompt may end with the user's turn, or with a tool's result the answer goes on from.
PROMPT_END_ROLES = ("user", "tool")


def check_prompt_end(messages: list[Message], field: str, issues: RowIssues) -> None:
    """The answer must be the model's next turn: a prompt ending in an answer has none to give."""
    if messages and messages[-1].role not in PROMPT_END_ROLES:
        issues.add(
            "invalid_prompt_end",
            field,
            f"The prompt ends with a {messages[-1].role} message; it must end with the user's "
            "turn (or a tool result), which the answers reply to.",
        )


def make_pair(
    prompt: Conversation,
    preferred: list[Message],
    rejected: list[Message],
    issues: RowIssues,
    *,
    fields: tuple[str, str] = ("preferred_output", "non_preferred_output"),
) -> PreferencePair | None:
    """A pair, once the pair-wide rules hold; None (the problems reported) otherwise.

    `fields` name the two answers as the file does (`chosen`/`rejected` in TRL's format).
    """
    for answer, field in zip((preferred, rejected), fields, strict=True):
        # OpenAI's DPO takes exactly one assistant message per side; the canonical JSONL is
        # OpenAI's, so a longer answer could not be written out and read back.
        if len(answer) != 1:
            issues.add(
                "multi_turn_output",
                field,
                f"{field} has {len(answer)} messages; a preference answer must be exactly one "
                "assistant message. Merge them into one, or keep the earlier turns in the prompt.",
            )
    if not issues.failed and preferred == rejected:
        issues.add(
            "identical_preference",
            fields[1],
            f"The {fields[0]} and {fields[1]} answers are identical, so this pair teaches "
            "nothing (DPO's loss has no gradient on it); change one or drop the pair.",
        )
    if issues.failed:
        return None
    return PreferencePair(
        input=prompt, preferred_output=preferred, non_preferred_output=rejected, line=issues.line
    )
