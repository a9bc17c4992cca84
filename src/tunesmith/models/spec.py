"""ModelSpec: what a model name resolves to. A leaf module, so every room can import it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ModelKind = Literal["builtin", "local", "gguf", "hub", "fine-tuned", "checkpoint"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to load a model by name.

    `base` is the base model's name (itself for a base model); `adapter` is a PEFT adapter folder
    to attach, or None. `weights` is a folder (or a hub id for kind "hub", a .gguf file for kind
    "gguf") holding the base weights, or, for a full fine-tune, the fine-tuned weights themselves.
    """

    name: str
    kind: ModelKind
    base: str
    weights: str
    adapter: Path | None = None
    created: int = 0
    owned_by: str = "tunesmith"
    extra: dict = field(default_factory=dict, compare=False)
