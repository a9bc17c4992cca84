"""Rows of the model catalog for `tunesmith models list` and the API: size, parameters, place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunesmith.models.catalog import BUILTINS, hub_reachable, is_hub_id, local_folder, local_gguf
from tunesmith.models.loading import (
    count_parameters,
    gguf_parameters,
    package_folder,
    size_on_disk,
)
from tunesmith.models.spec import ModelSpec
from tunesmith.settings import get_settings


@dataclass
class ModelRow:
    name: str
    kind: str
    parameters: int | None
    bytes: int | None
    location: str
    default: bool = False
    adapter: bool = False  # parameters count the adapter only; the base is shared
    base: str | None = None  # what a fine-tuned model or checkpoint was trained from
    job: str | None = None  # the fine-tuning job that made it


def builtin_rows() -> list[ModelRow]:
    from tunesmith.models.catalog import DEFAULT_MODEL

    rows = []
    for builtin in BUILTINS.values():
        try:
            gguf = package_folder(builtin.package) / builtin.gguf_file
        except Exception:  # the package is missing: still list the name, with where to get it
            rows.append(
                ModelRow(builtin.name, "builtin", None, None, f"pip install {builtin.package}")
            )
            continue
        cache = get_settings().models_dir / builtin.name
        location = str(gguf) + (f" (cached: {cache})" if cache.exists() else "")
        size = gguf.stat().st_size + (size_on_disk(cache) if cache.exists() else 0)
        rows.append(
            ModelRow(
                builtin.name,
                "builtin",
                gguf_parameters(gguf),
                size,
                location,
                default=builtin.name == DEFAULT_MODEL,
            )
        )
    return rows


def extra_rows(names: list[str]) -> list[ModelRow]:
    """Local folders, .gguf files and hub ids the user asked about."""
    rows = []
    for name in names:
        folder = local_folder(name)
        if folder is not None:
            rows.append(
                ModelRow(
                    str(folder),
                    "local",
                    count_parameters(folder),
                    size_on_disk(folder),
                    str(folder),
                )
            )
        elif (gguf := local_gguf(name)) is not None:
            rows.append(
                ModelRow(str(gguf), "gguf", gguf_parameters(gguf), size_on_disk(gguf), str(gguf))
            )
        elif is_hub_id(name) and hub_reachable():
            rows.append(ModelRow(name, "hub", None, None, f"https://huggingface.co/{name}"))
    return rows


def trained_rows(specs: list[ModelSpec]) -> list[ModelRow]:
    """Fine-tuned models and checkpoints: adapter parameters and size (the base is shared)."""
    rows = []
    for spec in specs:
        folder = Path(spec.adapter or spec.weights)
        exists = folder.exists()
        rows.append(
            ModelRow(
                spec.name,
                spec.kind,
                count_parameters(folder) if exists else None,
                size_on_disk(folder) if exists else None,
                str(folder) if exists else f"{folder} (missing)",
                adapter=spec.adapter is not None,
                base=spec.base,
                job=spec.extra.get("job_id"),
            )
        )
    return rows
