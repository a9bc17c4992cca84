"""Typer options generated from a pydantic config, so flags and YAML can never disagree.

Each field becomes `--field-name` (nested `lora.r` becomes `--lora-r`, `lora.lora_alpha`
`--lora-alpha`). Every flag defaults to None, meaning "not given": only given flags override the
YAML file, and pydantic validates the merged result once.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import BaseModel


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _choices(annotation: Any) -> list[str]:
    """The Literal values inside an annotation, for the help text."""
    found: list[str] = []
    if typing.get_origin(annotation) is Literal:
        found += [str(v) for v in typing.get_args(annotation)]
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is Literal or typing.get_args(arg):
            found += _choices(arg)
    return list(dict.fromkeys(found))


def flag_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Python parameter name -> (path of keys into the config, field info)."""
    out: dict[str, tuple] = {}
    for name, info in model.model_fields.items():
        if _is_model(info.annotation):
            out.update(flag_fields(info.annotation, (*prefix, name)))
            continue
        leaf = name.removeprefix(f"{prefix[-1]}_") if prefix else name
        out["_".join((*prefix, leaf))] = ((*prefix, name), info)
    return out


def _parameter(param: str, info, skip_help: bool) -> inspect.Parameter:
    annotation = info.annotation
    default = info.get_default(call_default_factory=True)
    shown = default if not isinstance(default, BaseModel) else None
    choices = _choices(annotation)
    help_text = info.description or ""
    if choices and "auto" not in choices[:1]:
        help_text += f" [{'|'.join(choices)}]"
    help_text += f" (default: {shown})"
    flag = "--" + param.replace("_", "-")
    if annotation is bool:
        option = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=help_text, show_default=False)
        py_type: Any = bool | None
    else:
        option = typer.Option(None, flag, help=help_text, show_default=False)
        py_type = str | None
    return inspect.Parameter(
        param, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=py_type
    )


def config_parameters(model: type[BaseModel], skip: set[str] = frozenset()) -> list:
    return [
        _parameter(param, info, False)
        for param, (_path, info) in flag_fields(model).items()
        if param not in skip
    ]


def overrides_from_flags(model: type[BaseModel], flags: dict[str, Any]) -> dict[str, Any]:
    """Given flags as a nested dict for load_config; list fields take comma-separated values."""
    fields = flag_fields(model)
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
