"""One naming rule between a run config and `tunesmith train`'s flags, both ways.

Each field becomes `--field-name`; a nested model's fields take its name as a prefix, dropping a
repeat (`lora.r` → `--lora-r`, `lora.lora_alpha` → `--lora-alpha`). The CLI builds its options
from `flag_fields`; the web UI shows the command a config equals (`train_args`) and builds its
form from `describe_fields`, so the form, the flags and the YAML name every setting alike.
"""

from __future__ import annotations

import shlex
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tunesmith.train.config import METHOD_CONFIGS, SFTConfig

# The headings of SFTConfig's field groups (its comments), keyed by each group's first field;
# `method` comes before them, and a method's own fields go under "<METHOD> settings".
GROUP_STARTS = {
    "data": "What to train on",
    "tuning": "How",
    "eval_steps": "Watching",
    "device": "Speed",
    "nproc": "Processes",
}
METHOD_GROUP = "Method"
# Fields naming files: the CLI takes a path, the API an uploaded file's id (or, for the grader,
# the JSON itself), so `train_args` is told what to call them.
FILE_FIELDS = ("data", "validation", "grader")


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


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


def flag_name(param: str) -> str:
    """`lora_r` → `--lora-r`."""
    return "--" + param.replace("_", "-")


def choices(annotation: Any) -> list[str]:
    """The Literal values inside an annotation."""
    found: list[str] = []
    if typing.get_origin(annotation) is Literal:
        found += [str(v) for v in typing.get_args(annotation)]
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is Literal or typing.get_args(arg):
            found += choices(arg)
    return list(dict.fromkeys(found))


def _value_at(config: BaseModel, path: tuple[str, ...]) -> Any:
    value: Any = config
    for key in path:
        value = getattr(value, key)
    return value


def _flag_value(value: Any) -> str:
    """A value as the CLI reads it back (see cli/options.py `overrides_from_flags`)."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):  # the column mapping: ROLE=COLUMN items
        return ",".join(f"{role}={column}" for role, column in value.items())
    return str(value)


def train_args(config: SFTConfig, files: dict[str, str] | None = None) -> list[str]:
    """The `tunesmith train` arguments that give `config`: each setting that differs from its
    method's default. `files` names the files on the command line (`{"data": "train.jsonl"}`);
    without a name, a file field's own value is used."""
    files = files or {}
    defaults = METHOD_CONFIGS[config.method]()
    args: list[str] = []
    for param, (path, info) in flag_fields(type(config)).items():
        value = _value_at(config, path)
        if param in FILE_FIELDS:
            args += _file_args(param, value, files)
            continue
        # `method` is compared with the CLI's default (sft), not with the method's own
        if value == (_value_at(defaults, path) if param != "method" else "sft"):
            continue
        if value is None:
            raise ValueError(f"{param}=None differs from its default and has no flag")
        if info.annotation is bool:
            args.append(flag_name(param) if value else f"--no-{flag_name(param)[2:]}")
        else:
            args += [flag_name(param), _flag_value(value)]
    return args


def _file_args(param: str, value: Any, files: dict[str, str]) -> list[str]:
    if param in files:
        return [flag_name(param), files[param]]
    if value is None:
        return []
    if isinstance(value, Path):
        return [flag_name(param), str(value)]
    raise ValueError(f"{param} is not a file here: name the file it is written to in `files`")


def train_command(config: SFTConfig, files: dict[str, str] | None = None) -> str:
    """`train_args` as one shell line, quoted where needed."""
    return shlex.join(["tunesmith", "train", *train_args(config, files)])


# --- the fields as a form describes them ----------------------------------------------------------


def _kind(annotation: Any) -> str:
    """The control a field needs: bool, int, float, choice, list, mapping, object, path, string."""
    if annotation is bool:
        return "bool"
    text = str(annotation)
    if "Path" in text:
        return "path"
    if "dict[str, str]" in text:
        return "mapping"
    if "dict" in text:
        return "object"
    if "list[" in text:
        return "list"
    if annotation is int or "int" in text.replace("Literal", ""):
        return "int"
    if annotation is float or "float" in text:
        return "float"
    if choices(annotation):
        return "choice"
    return "string"


def _describe(param: str, path: tuple[str, ...], info: FieldInfo, group: str) -> dict[str, Any]:
    options = choices(info.annotation)
    default = info.get_default(call_default_factory=True)
    return {
        "name": param,
        "path": list(path),
        "flag": flag_name(param),
        "kind": _kind(info.annotation),
        "choices": options,
        "auto": "auto" in options,
        "default": default.model_dump() if isinstance(default, BaseModel) else default,
        "description": info.description or "",
        "group": group,
    }


def describe_fields(model: type[SFTConfig]) -> list[dict[str, Any]]:
    """Every setting of a method's config in declaration order, with its group heading."""
    own = f"{model.model_fields['method'].default.upper()} settings"
    group = METHOD_GROUP
    out = []
    for param, (path, info) in flag_fields(model).items():
        if path[0] in SFTConfig.model_fields:
            group = GROUP_STARTS.get(path[0], group)
        out.append(
            _describe(param, path, info, group if path[0] in SFTConfig.model_fields else own)
        )
    return out


def describe_methods() -> list[dict[str, Any]]:
    """Each training method: what it trains on and the settings its config has."""
    return [
        {
            "name": name,
            "description": (model.__doc__ or "").strip(),
            "data_kind": model.data_kind,
            "openai_type": model.openai_type,
            "fields": describe_fields(model),
        }
        for name, model in METHOD_CONFIGS.items()
    ]
