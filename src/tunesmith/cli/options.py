"""Typer options generated from pydantic configs, so flags and YAML can never disagree.

Each field becomes `--field-name` by train/flags.py's rule (nested `lora.r` becomes `--lora-r`,
`lora.lora_alpha` `--lora-alpha`), the rule the web UI uses to show a config as a command. Every flag defaults to None, meaning "not given": only given flags override the
YAML file, and pydantic validates the merged result once. Several configs (one per training
method) give one set of flags: a field they share (`beta`) is one flag, its help naming each
method's default, and the discriminating field (`method`) lists every method.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel

from tunesmith.train.flags import choices, flag_fields, flag_name


def _fields_of(models: tuple[type[BaseModel], ...]) -> dict[str, list[tuple[str, tuple, Any]]]:
    """Parameter name -> [(the model's tag, path, field info)] for every model that has it."""
    out: dict[str, list] = {}
    for model in models:
        tag = model.model_fields["method"].default if "method" in model.model_fields else ""
        for param, (path, info) in flag_fields(model).items():
            out.setdefault(param, []).append((tag, path, info))
    return out


def _parameter(param: str, owners: list, n_models: int) -> inspect.Parameter:
    info = owners[0][2]
    annotation = info.annotation
    default = info.get_default(call_default_factory=True)
    shown = default if not isinstance(default, BaseModel) else None
    options = choices(annotation)
    if param == "method" and n_models > 1:  # each model knows only its own tag
        options = [tag for tag, _, _ in owners]
    help_text = info.description or ""
    if options and "auto" not in options[:1]:
        help_text += f" [{'|'.join(options)}]"
    defaults = {tag: o.get_default(call_default_factory=True) for tag, _, o in owners if tag}
    if 1 < len(owners) < n_models:  # a setting of some methods: say whose, and their defaults
        help_text += " (" + ", ".join(f"{tag}: {value}" for tag, value in defaults.items()) + ")"
    else:
        help_text += f" (default: {shown})"
    flag = flag_name(param)
    if annotation is bool:
        option = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=help_text, show_default=False)
        py_type: Any = bool | None
    else:
        option = typer.Option(None, flag, help=help_text, show_default=False)
        py_type = str | None
    return inspect.Parameter(
        param, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=py_type
    )


def config_parameters(*models: type[BaseModel], skip: set[str] = frozenset()) -> list:
    return [
        _parameter(param, owners, len(models))
        for param, owners in _fields_of(models).items()
        if param not in skip
    ]


def overrides_from_flags(models: tuple[type[BaseModel], ...], flags: dict[str, Any]) -> dict:
    """Given flags as a nested dict for load_config; list fields take comma-separated values."""
    fields = {param: owners[0][1:] for param, owners in _fields_of(models).items()}
    out: dict[str, Any] = {}
    for param, value in flags.items():
        if value is None or param not in fields:
            continue
        path, info = fields[param]
        if isinstance(value, str) and "list[str]" in str(info.annotation) and value != "all-linear":
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, str) and "dict[str, str]" in str(info.annotation):
            from tunesmith.data.readers import parse_mapping

            value = parse_mapping(value.split(","))
        if isinstance(value, str) and "Path" in str(info.annotation):
            value = str(Path(value))
        target = out
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return out


def generated_command(run: Callable[..., None], params: list[inspect.Parameter], doc: str):
    """A function Typer reads as a command taking `params` (generated, so not spelled in a
    `def`), calling `run` with them."""

    def command(**kwargs: Any) -> None:
        run(**kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    return command
