"""A config shown as a `tunesmith train` command is one the CLI really accepts, and it gives back
the same config: parsed by the CLI's own Click command, `overrides_from_flags` and `load_config`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import typer

from tunesmith.cli import app
from tunesmith.cli.options import overrides_from_flags
from tunesmith.train.config import METHOD_CONFIGS, SFTConfig, load_config, parse_config
from tunesmith.train.flags import describe_methods, flag_name, train_args, train_command

GRADER = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}  # fmt: skip
CONFIGS = {
    "defaults": {},
    "sft, every kind of value": {
        "model": "ft:smollm2-135m-instruct:local:ui:abc123",
        "suffix": "two words",
        "tuning": "full",
        "lora": {"r": 8, "lora_alpha": 32, "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
        "epochs": 2,
        "batch_size": 4,
        "learning_rate": 1e-5,
        "lr_scheduler": "cosine",
        "eval_steps": 3,
        "early_stopping_patience": 2,
        "packing": False,
        "gradient_checkpointing": True,
        "mapping": {"user": "question", "assistant": "answer"},
        "seed": 7,
    },
    "dpo": {"method": "dpo", "beta": 0.3, "loss_type": "ipo", "label_smoothing": 0.1},
    "orpo": {"method": "orpo", "beta": 0.2},
    "kto": {"method": "kto", "desirable_weight": 2.0},
    "grpo": {"method": "grpo", "grader": GRADER, "num_generations": 2, "temperature": 0.7},
}  # fmt: skip


def _cli_config(command: str) -> SFTConfig:
    """What `tunesmith train` makes of a command line, by its own parser and merge."""
    argv = shlex.split(command)
    assert argv[:2] == ["tunesmith", "train"]
    click_command = typer.main.get_command(app).commands["train"]
    with click_command.make_context("train", argv[2:]) as ctx:  # exits 2 on an unknown flag
        params = dict(ctx.params)
    flags = {k: v for k, v in params.items() if k not in ("config", "resume", "print_config")}
    return load_config(None, overrides_from_flags(tuple(METHOD_CONFIGS.values()), flags))


@pytest.mark.parametrize("values", CONFIGS.values(), ids=CONFIGS.keys())
def test_the_command_gives_back_the_same_config(values, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("grader.json").write_text(json.dumps(GRADER))
    config = parse_config({**values, "data": "train.jsonl", "validation": "valid.jsonl"})
    command = train_command(config, {"data": "train.jsonl", "validation": "valid.jsonl",
                                     "grader": "grader.json"})  # fmt: skip
    assert _cli_config(command) == config


def test_only_settings_that_differ_from_the_method_defaults_are_written() -> None:
    assert train_args(parse_config({}), {"data": "t.jsonl"}) == ["--data", "t.jsonl"]
    args = train_args(parse_config({"method": "grpo", "beta": 0.0, "grader": GRADER}),
                      {"data": "t.jsonl", "grader": "g.json"})  # fmt: skip
    # beta 0.0 is grpo's own default (dpo's is 0.1): not written
    assert args == ["--method", "grpo", "--data", "t.jsonl", "--grader", "g.json"]
    args = train_args(parse_config({"packing": False, "lora": {"r": 4}, "epochs": 1}))
    assert args == ["--lora-r", "4", "--epochs", "1", "--no-packing"]


def test_a_grader_with_no_file_name_is_refused() -> None:
    with pytest.raises(ValueError, match="grader"):
        train_args(parse_config({"method": "grpo", "grader": GRADER}))


def test_the_form_description_names_every_flag_the_cli_has() -> None:
    click_command = typer.main.get_command(app).commands["train"]
    cli_flags = {opt for param in click_command.params for opt in param.opts}
    methods = {m["name"]: m for m in describe_methods()}
    assert list(methods) == list(METHOD_CONFIGS)
    for method in methods.values():
        for field in method["fields"]:
            assert field["flag"] in cli_flags, field["flag"]
            assert field["flag"] == flag_name(field["name"])
    sft = {f["name"]: f for f in methods["sft"]["fields"]}
    assert sft["lora_r"]["path"] == ["lora", "r"] and sft["lora_r"]["group"] == "How"
    assert sft["epochs"]["auto"] and sft["epochs"]["default"] == "auto"
    assert sft["packing"]["kind"] == "bool" and sft["packing"]["group"] == "Speed"
    assert sft["eval_steps"]["group"] == "Watching" and sft["data"]["kind"] == "path"
    dpo = {f["name"]: f for f in methods["dpo"]["fields"]}
    assert dpo["loss_type"]["choices"] == ["sigmoid", "ipo", "hinge"]
    assert dpo["beta"]["group"] == "DPO settings" and dpo["beta"]["default"] == 0.1
