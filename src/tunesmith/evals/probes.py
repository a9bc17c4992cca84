"""The forgetting probes: general-instruction prompts asked before and after fine-tuning."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tunesmith.data.records import Message
from tunesmith.errors import TunesmithError
from tunesmith.tasks import PROBES


class Probe(BaseModel):
    """One probe: a prompt, a reference answer for people to read, and what counts as right."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    category: str
    messages: list[Message]
    reference: str
    accept: list[str] = Field(
        min_length=1,
        description="Lowercase phrases; an answer holding any one of them as whole words is right.",
    )

    @field_validator("accept")
    @classmethod
    def _normalised(cls, accept: list[str]) -> list[str]:
        # Stored the way answers are compared: lowercase, single spaces.
        phrases = [" ".join(a.lower().split()) for a in accept]
        if not all(phrases):
            raise ValueError("accept phrases must not be empty")
        return phrases


def load_probes(path: Path = PROBES) -> list[Probe]:
    """Every probe in the JSONL file, in file order (the bundled set by default)."""
    probes = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            probes.append(Probe.model_validate_json(line))
        except ValidationError as exc:
            raise TunesmithError(f"{path}, line {number}: not a probe. {exc}") from exc
    return probes


@lru_cache(maxsize=256)
def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    # Whole words only: "4" must not match "14", nor "red" match "reduced".
    return re.compile(rf"(?<!\w){re.escape(phrase)}(?!\w)")


def probe_score(answer: str, probe: Probe) -> float:
    """1.0 when the lowercased answer holds one of the probe's accepted phrases as whole words.

    Whitespace runs count as one space, so a list answered one item per line still matches
    "1 2 3". Anything that is not text (None) scores 0.
    """
    if not isinstance(answer, str):
        return 0.0
    text = " ".join(answer.lower().split())
    return 1.0 if any(_phrase_pattern(p).search(text) for p in probe.accept) else 0.0
