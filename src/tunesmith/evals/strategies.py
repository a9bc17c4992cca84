"""The four ways to answer a test example: zero-shot, few-shot, retrieval-augmented, fine-tuned.

Each strategy turns a test conversation into the messages a model sees. Demonstrations are whole
training examples written as earlier user/assistant turns, after the test's own system message, so
the model sees the task's exact input and answer format. Every strategy offers the test example's
own tools (`Prompts.tools`), rendered by `data.render` as at training time: demonstrations' tool
calls are ordinary assistant turns, written the way a fine-tuned model learned them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunesmith.data.records import Conversation, Message

if TYPE_CHECKING:
    from tunesmith.evals.retrieval import Index, Passage

ZERO, FEW, RAG, TUNED = "zero-shot", "few-shot", "rag", "fine-tuned"
STRATEGIES = (ZERO, FEW, RAG, TUNED)
PROMPTING = (ZERO, FEW, RAG)


def tuned_labels(n: int) -> list[str]:
    """The report's names for n fine-tuned models: "fine-tuned" alone, else numbered in the order
    given ("fine-tuned #1", "fine-tuned #2"); the model column says which is which."""
    return [TUNED] if n == 1 else [f"{TUNED} #{i}" for i in range(1, n + 1)]


def is_tuned(name: str) -> bool:
    """Whether a report row (a name from `tuned_labels`, or a strategy) is a fine-tuned model."""
    return name == TUNED or name.startswith(f"{TUNED} #")


def query_text(conversation: Conversation | list[Message]) -> str:
    """What retrieval compares: the user turns of the prompt."""
    messages = conversation.prompt if isinstance(conversation, Conversation) else conversation
    return "\n".join(m.content or "" for m in messages if m.role == "user")


def demonstration_turns(example: Conversation) -> list[Message]:
    """A training example as turns to show: its prompt (without system messages) and answer."""
    turns = [m for m in example.prompt if m.role not in ("system", "developer")]
    return [*turns, example.answer]


def with_demonstrations(test: Conversation, demos: list[Conversation]) -> list[Message]:
    system = [m for m in test.prompt if m.role in ("system", "developer")]
    rest = [m for m in test.prompt if m.role not in ("system", "developer")]
    shown = [turn for demo in demos for turn in demonstration_turns(demo)]
    return [*system, *shown, *rest]


def with_context(test: Conversation, passages: list[Passage]) -> list[Message]:
    """Retrieved passages from the user's own documents, given as context in the system turn."""
    context = "\n\n".join(f"[{p.source}]\n{p.text}" for p in passages)
    note = f"Use this context where it helps:\n\n{context}"
    system = [m for m in test.prompt if m.role in ("system", "developer")]
    rest = [m for m in test.prompt if m.role not in ("system", "developer")]
    if system:
        first = system[0]
        system[0] = Message(role=first.role, content=f"{first.content or ''}\n\n{note}")
        return [*system, *rest]
    return [Message(role="system", content=note), *rest]


def fixed_shots(train: list[Conversation], k: int, seed: int) -> list[Conversation]:
    """The same k training examples for every test example (seeded)."""
    return random.Random(seed).sample(train, min(k, len(train)))


@dataclass
class Prompts:
    """The messages each strategy sends for each test example."""

    by_strategy: dict[str, list[list[Message]]]
    tools: list[list[dict] | None]  # per test example, the same for every strategy
    shots: list[Conversation]
    retrieved: list[list[int]]  # per test example: indices into train (or passages)


def build_prompts(
    train: list[Conversation],
    tests: list[Conversation],
    k: int,
    seed: int,
    index: Index | None,
    passages: list[Passage] | None = None,
) -> Prompts:
    shots = fixed_shots(train, k, seed)
    retrieved: list[list[int]] = [[] for _ in tests]
    if index is not None and k:
        retrieved = index.search([query_text(t) for t in tests], k)
    if passages is not None:
        rag = [
            with_context(t, [passages[i] for i in ids])
            for t, ids in zip(tests, retrieved, strict=True)
        ]
    else:
        # Nearest last: the demonstration closest to the question sits right before it.
        rag = [
            with_demonstrations(t, [train[i] for i in reversed(ids)])
            for t, ids in zip(tests, retrieved, strict=True)
        ]
    return Prompts(
        by_strategy={
            ZERO: [t.prompt for t in tests],
            FEW: [with_demonstrations(t, shots) for t in tests],
            RAG: rag,
            TUNED: [t.prompt for t in tests],
        },
        tools=[t.tools for t in tests],
        shots=shots,
        retrieved=retrieved,
    )
