"""OpenAI's reinforcement fine-tuning lines to records: a prompt, and the fields graders read.

Each line is {"messages": [...], "tools"?: [...], ...}: `messages` and `tools` are OpenAI's only
reserved keys; every other field is the item a grader reads as `{{item.NAME}}`. The last message
must be the user's (OpenAI's and Azure's RFT guides): the model writes the answer itself.
"""

from __future__ import annotations

from typing import Any

from tunesmith.data.issues import RowIssues
from tunesmith.data.openai_format import conversation
from tunesmith.data.other_formats import not_an_object
from tunesmith.data.records import RFTExample

RESERVED = ("messages", "tools")


def rft_record(row: Any, issues: RowIssues) -> RFTExample | None:
    if not_an_object(row, issues, '{"messages": [...], "reference_answer": ...}'):
        return None
    prompt = conversation(
        {key: row[key] for key in RESERVED if key in row},
        issues,
        prefix="",
        require_assistant=False,
    )
    if prompt is not None and prompt.messages[-1].role != "user":
        last = len(prompt.messages) - 1
        issues.add(
            "rft_last_message_not_user",
            f"messages[{last}].role",
            f"The last message is a {prompt.messages[-1].role} message; in reinforcement "
            "fine-tuning it must be the user's, since the model writes the answer that the "
            "grader scores. Remove the answer (keep it as a field for the grader).",
        )
    if issues.failed or prompt is None:
        return None
    item = {key: value for key, value in row.items() if key not in RESERVED}
    return RFTExample(messages=prompt.messages, tools=prompt.tools, item=item, line=issues.line)


def ends_with_user(row: dict) -> bool:
    """Whether a messages row looks like an RFT prompt rather than a chat example."""
    messages = row.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    return isinstance(last, dict) and last.get("role") == "user"
