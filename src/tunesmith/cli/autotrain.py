"""`tunesmith autotrain llm --train ...`: AutoTrain Advanced's `autotrain llm` flags, read by the
same translation as its YAML configs (train/autotrain.py), then trained as `tunesmith train`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from tunesmith.cli.options import generated_command
from tunesmith.errors import TunesmithError
from tunesmith.train.autotrain import LLMParams

app = typer.Typer(
    help="Run AutoTrain Advanced's commands unchanged: `tunesmith autotrain llm --train ...`.",
    no_args_is_help=True,
)

HELP = """AutoTrain Advanced's `autotrain llm`: the same flags (--model, --data-path, --text-column,
--lr, --epochs, --batch-size, --peft, --trainer sft|dpo|orpo, ...), trained here by tunesmith.

Each flag is mapped to tunesmith's setting, or answered with what tunesmith does instead (printed
as a warning); --strict refuses what can only be approximated. Example:

  tunesmith autotrain llm --train --model HuggingFaceTB/SmolLM2-135M-Instruct --project-name my-sft
      --data-path data/ --text-column text --trainer sft --peft --lr 2e-4 --epochs 1
"""
# AutoTrain's own flags besides its params (`--train` runs; the other two it never implemented).
ACTIONS = ("train", "deploy", "inference")


def llm_command(strict: bool, print_config: bool, **flags: Any) -> None:
    from tunesmith.cli.console import err, out
    from tunesmith.cli.store import store
    from tunesmith.cli.train import follow, print_notes, submit
    from tunesmith.train import autotrain
    from tunesmith.train.config import config_error, dump_yaml, parse_config

    actions = {name: flags.pop(name) for name in ACTIONS}
    if actions["deploy"] or actions["inference"]:
        raise TunesmithError(
            "--deploy and --inference are not run here (AutoTrain never implemented them).",
            "After training, `tunesmith serve` serves the model and `tunesmith chat MODEL` "
            "talks to it.",
        )
    if not actions["train"] and not print_config:
        raise TunesmithError(
            "Nothing to do: pass --train, as with `autotrain llm --train ...`.",
            "--print-config shows the tunesmith settings the flags become.",
        )
    written = {name: value for name, value in flags.items() if value not in (None, False)}
    if "block_size" in written:  # AutoTrain's CLI takes "1024" or "1024,2048"
        written["block_size"] = block_sizes(written["block_size"])
    translation = autotrain.translate(written, Path.cwd(), strict=strict)
    notes = [autotrain.detected("`autotrain llm`'s flags", translation), *translation.notes]
    from pydantic import ValidationError

    try:
        cfg = parse_config(translation.values)
    except ValidationError as exc:
        raise config_error(exc, "autotrain llm flags") from None
    if print_config:
        print_notes(notes, console=err)
        out.print(dump_yaml(cfg), end="", markup=False, highlight=False, soft_wrap=True)
        return
    print_notes(notes)
    follow(submit(store(), cfg, notes).id)


def block_sizes(text: str) -> int | list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise TunesmithError(
            f"--block-size {text!r} is not a number (or numbers separated by commas).",
            param="block_size",
        ) from None
    return sizes[0] if len(sizes) == 1 else sizes


def _option(name: str, annotation: Any, help_text: str) -> inspect.Parameter:
    """A flag under AutoTrain's two spellings (--data-path and --data_path); booleans are
    store_true switches, as in AutoTrain, and values are passed on as text for its params'
    own validation."""
    names = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
    is_bool = annotation is bool
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(False if is_bool else None, *names, help=help_text),
        annotation=bool if is_bool else str | None,
    )


def register(parent: typer.Typer) -> None:
    params = [
        _option("train", bool, "Train the model."),
        _option("deploy", bool, "Not available (AutoTrain never implemented it)."),
        _option("inference", bool, "Not available (AutoTrain never implemented it)."),
        *(
            _option(name, field.annotation, f"AutoTrain's {name} (default: {field.default!r}).")
            for name, field in LLMParams.model_fields.items()
        ),
        _option("strict", bool, "Refuse the settings that can only be approximated here."),
        _option("print_config", bool, "Print the tunesmith settings the flags become, and exit."),
    ]

    app.command("llm")(generated_command(llm_command, params, HELP))
    parent.add_typer(app, name="autotrain")
