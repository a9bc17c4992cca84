"""The `tunesmith` command, run as the real console script: help for every command, bad input
refused with one readable error (exit 1, never a traceback), and the data/models/jobs commands.

Subprocesses inherit the autouse fixture's TUNESMITH_HOME, TUNESMITH_MODELS_CACHE and
HF_HUB_OFFLINE through os.environ (test_cli_uses_the_test_home checks it). Each costs ~1 s, or
~4 s where it loads a tokenizer, so they are few and each checks several things.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.data.readers import read
from tunesmith.data.split import split
from tunesmith.models.catalog import DEFAULT_MODEL
from tunesmith.store import open_store


def _executable() -> str:
    beside = Path(sys.executable).parent / "tunesmith"
    found = str(beside) if beside.exists() else shutil.which("tunesmith")
    assert found, "the tunesmith console script is not installed"
    return found


EXE = _executable()


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def tunesmith(*args: str | Path, cwd: Path | None = None) -> Ran:
    # A wide console, so that Rich does not fold the lines the tests look for.
    env = {**os.environ, "COLUMNS": "400"}
    proc = subprocess.run(
        [EXE, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=180
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def refused(ran: Ran, *named: str) -> None:
    """Exit 1, one "Error:" paragraph naming what is wrong, and no traceback."""
    assert ran.code == 1, ran.output
    assert "Traceback" not in ran.output, ran.output
    assert "Error:" in ran.output, ran.output
    for text in named:
        assert text in ran.output, ran.output


def chat_line(n: int) -> str:
    messages = [
        {"role": "user", "content": f"What is {n} plus {n}?"},
        {"role": "assistant", "content": str(2 * n)},
    ]
    return json.dumps({"messages": messages})


# --- help -----------------------------------------------------------------------------------------

COMMANDS = [
    [],
    ["train"],
    ["chat"],
    ["demo"],
    ["data"],
    ["data", "check"],
    ["data", "convert"],
    ["data", "split"],
    ["models"],
    ["models", "list"],
    ["jobs"],
    ["jobs", "list"],
    ["jobs", "show"],
    ["jobs", "events"],
    ["export"],
    ["serve"],
    ["compare"],
    ["deploy"],
    ["deployments"],
    ["deployments", "list"],
    ["deployments", "delete"],
    ["autotrain"],
    ["autotrain", "llm"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "tunesmith")
def test_help_of_every_command(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert f"tunesmith {' '.join(command)}".strip() in result.output


def test_train_help_lists_flags_generated_from_the_config():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    for flag in (
        "--config",
        "--resume",
        "--data",
        "--epochs",
        "--lora-r",
        "--lora-alpha",
        "--learning-rate",
        "--batch-size",
        "--packing",
        "--method",
        "--tuning",
        "--beta",
        "--loss-type",
        "--label-smoothing",
        "--grader",
        "--num-generations",
    ):
        assert flag in result.output


def test_help_imports_no_heavy_library():
    """Heavy imports live inside the commands, so `--help` is instant."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tunesmith.cli import app\n"
        "for command in (['--help'], ['train', '--help'], ['data', 'check', '--help']):\n"
        "    assert CliRunner().invoke(app, command).exit_code == 0\n"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'gguf')"
        " if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_console_script_help():
    ran = tunesmith("--help")
    assert ran.code == 0, ran.output
    for command in ("train", "chat", "demo", "data", "models", "jobs"):
        assert command in ran.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["train", "--no-such-flag"], "--no-such-flag"),
        (["data", "check"], "Missing"),
        ([], "Usage"),
    ],
    ids=["unknown-flag", "missing-argument", "no-arguments"],
)
def test_usage_errors_print_no_traceback(args, named):
    ran = tunesmith(*args)
    assert "Traceback" not in ran.output, ran.output
    assert named in ran.output, ran.output
    if args:
        assert ran.code == 1, ran.output  # run_guarded: usage errors are bad input, exit 1


# --- bad input: one error, exit 1 -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "flag", "named"),
    [
        ("serve", ["--engine", "tgi"], "builtin, llamacpp, vllm"),
        ("serve", ["--quantize", "int2"], "--quantize int8 or --quantize int4"),
        ("compare", ["--train", "t.jsonl", "--test", "t.jsonl", "--quantize", "fp8"], "int8"),
    ],
    ids=["serve-engine", "serve-quantize", "compare-quantize"],
)
def test_engine_choices_are_refused_before_anything_loads(command, flag, named):
    refused(tunesmith(command, *flag), "is not a choice", named)


def test_serving_on_vllm_without_it_says_how_to_get_it(monkeypatch, tmp_path):
    """Before the server starts, not at its first request: no vLLM installed for tunesmith (an
    empty cache), then a TUNESMITH_VLLM_PYTHON that names nothing."""
    monkeypatch.delenv("TUNESMITH_VLLM_PYTHON", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    refused(tunesmith("serve", "--engine", "vllm"), "make vllm")
    monkeypatch.setenv("TUNESMITH_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    refused(tunesmith("serve", "--engine", "vllm"), "does not exist")


def test_missing_file(tmp_path):
    refused(tunesmith("data", "convert", "nope.jsonl", "out.jsonl", cwd=tmp_path), "nope.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_file_not_in_utf8(tmp_path):
    (tmp_path / "latin.jsonl").write_bytes(b"\xff\xfe" + chat_line(1).encode() + b"\n")
    refused(tunesmith("data", "split", "latin.jsonl", cwd=tmp_path), "latin.jsonl", "UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latin.jsonl"]


def test_file_of_unknown_format(tmp_path):
    (tmp_path / "foo.jsonl").write_text("".join(json.dumps({"foo": n}) + "\n" for n in range(12)))
    ran = tunesmith("data", "convert", "foo.jsonl", "out.jsonl", cwd=tmp_path)
    refused(ran, "foo.jsonl", "'foo'", "format")
    assert not (tmp_path / "out.jsonl").exists()


def test_data_check_names_the_line_of_malformed_json(tmp_path):
    lines = [chat_line(n) for n in range(12)]
    lines[4] = lines[4][:-2]  # line 5 loses its closing braces
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    ran = tunesmith("data", "check", "bad.jsonl", cwd=tmp_path)
    assert ran.code == 1, ran.output
    assert "Traceback" not in ran.output
    assert "line 5" in ran.output
    assert "invalid_json" in ran.output


def test_train_refuses_too_few_examples_before_creating_a_job(tmp_path, tunesmith_home):
    (tmp_path / "small.jsonl").write_text("".join(chat_line(n) + "\n" for n in range(5)))
    refused(tunesmith("train", "--data", "small.jsonl", cwd=tmp_path), "5 example(s)", "10")
    listed = tunesmith("jobs", "list")
    assert listed.code == 0, listed.output
    assert "ftjob-" not in listed.output
    store = open_store()
    assert store.jobs.list().data == []
    assert store.files.list() == ([], False)  # no copy of the refused data was stored either
    store.close()


@pytest.mark.parametrize("model", ["nope", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_train_refuses_an_unknown_model(orders, model):
    """The hub id is unknown too: HF_HUB_OFFLINE=1 reached the subprocess."""
    ran = tunesmith("train", "--model", model, "--data", orders / "train.jsonl")
    refused(ran, f"Unknown model {model!r}", DEFAULT_MODEL)
    assert open_store().jobs.list().data == []


def test_chat_refuses_an_unknown_model():
    refused(tunesmith("chat", "nope", "-p", "hi"), "Unknown model 'nope'", DEFAULT_MODEL)


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [
        ("--epochs", "-1", "epochs"),
        ("--lora-r", "0", "lora.r"),
        ("--learning-rate", "7", "learning_rate"),
    ],
)
def test_train_refuses_bad_flag_values(orders, flag, value, field):
    ran = tunesmith("train", "--data", orders / "train.jsonl", flag, value)
    refused(ran, f"{field}=")


def test_train_refuses_an_unknown_config_key_with_did_you_mean(tmp_path, orders):
    config = tmp_path / "run.yaml"
    config.write_text(f"data: {orders / 'train.jsonl'}\nlora:\n  rank: 8\n")
    refused(tunesmith("train", "--config", config), "'lora.rank'", "Did you mean 'lora.r'?")


def test_print_config_shows_the_method_settings(tmp_path):
    ran = tunesmith("train", "--method", "dpo", "--beta", "0.3", "--print-config")
    assert ran.code == 0, ran.output
    assert "method: dpo" in ran.stdout and "beta: 0.3" in ran.stdout
    assert "loss_type: sigmoid" in ran.stdout
    (tmp_path / "run.yaml").write_text(ran.stdout)
    again = tunesmith("train", "--config", tmp_path / "run.yaml", "--print-config")
    assert again.stdout == ran.stdout  # the YAML it prints is a config that reads back the same


def test_method_settings_and_data_kinds_are_refused_before_a_job(tmp_path, orders):
    refused(tunesmith("train", "--data", orders / "train.jsonl", "--beta", "0.2"), "'beta'", "dpo")
    # chat examples for DPO: the data check says what the method needs
    refused(tunesmith("train", "--method", "dpo", "--data", orders / "train.jsonl"), "wrong_method")
    refused(tunesmith("train", "--method", "grpo", "--data", orders / "train.jsonl"), "grader")
    grader = tmp_path / "g.json"
    grader.write_text(
        '{"type": "string_check", "name": "x", "input": "{{ sample.output_text }}", '
        '"reference": "{{ item.answer }}", "operation": "eq"}'
    )
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": f"Say {i}"}], "solution": str(i)})
            + "\n"
            for i in range(12)
        )
    )
    ran = tunesmith("train", "--method", "grpo", "--grader", grader, "--data", prompts)
    refused(ran, "answer")  # the grader reads {{ item.answer }}; the lines have no such field
    assert open_store().jobs.list().data == []


# --- data check, convert, split -------------------------------------------------------------------


def test_data_check_of_good_data_prints_token_statistics(orders):
    ran = tunesmith("data", "check", orders / "validation.jsonl")
    assert ran.code == 0, ran.output
    assert "40 examples" in ran.stdout
    assert "median" in ran.stdout
    assert "billed tokens" in ran.stdout
    assert "usable" in ran.stdout


def test_data_convert_writes_chat_jsonl_that_data_check_accepts(tmp_path):
    alpaca = [
        {"instruction": f"Double the number {n}.", "input": "", "output": str(2 * n)}
        for n in range(12)
    ]
    (tmp_path / "alpaca.json").write_text(json.dumps(alpaca))
    ran = tunesmith("data", "convert", "alpaca.json", "chat.jsonl", cwd=tmp_path)
    assert ran.code == 0, ran.output
    rows = [json.loads(line) for line in (tmp_path / "chat.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert rows[3] == {
        "messages": [
            {"role": "user", "content": "Double the number 3."},
            {"role": "assistant", "content": "6"},
        ]
    }

    checked = tunesmith("data", "check", "chat.jsonl", "--json", cwd=tmp_path)
    assert checked.code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["ok"] is True
    assert (report["format"], report["n_examples"], report["errors"]) == ("chat", 12, [])
    assert report["stats"]["billed_tokens"] > 0


def test_data_split_is_deterministic_for_a_seed(tmp_path, orders):
    source = orders / "validation.jsonl"
    outputs = []
    for name in ("a", "b"):
        ran = tunesmith(
            "data",
            "split",
            source,
            "--validation",
            "0.2",
            "--seed",
            "3",
            "--out-dir",
            tmp_path / name,
        )
        assert ran.code == 0, ran.output
        train = (tmp_path / name / "validation.train.jsonl").read_text()
        valid = (tmp_path / name / "validation.validation.jsonl").read_text()
        outputs.append((train, valid))
    assert outputs[0] == outputs[1]

    train, valid = (text.splitlines() for text in outputs[0])
    original = source.read_text().splitlines()
    assert len(train) + len(valid) == len(original) == 40
    assert len(valid) == 8

    def canonical(lines):
        return sorted(json.dumps(json.loads(line), sort_keys=True) for line in lines)

    assert canonical(train + valid) == canonical(original)
    _, expected = split(read(source).records, validation=0.2, seed=3)
    assert canonical(valid) == canonical(json.dumps(r.to_openai()) for r in expected)


# --- models and jobs ------------------------------------------------------------------------------


def test_models_list_shows_the_builtin_default(builtin_dir):
    ran = tunesmith("models", "list")
    assert ran.code == 0, ran.output
    line = next(row for row in ran.stdout.splitlines() if DEFAULT_MODEL in row)
    assert "(default)" in line
    assert "134.5M" in line
    assert ".gguf" in line
    # TUNESMITH_MODELS_CACHE reached the subprocess: the cache shown is the tests' shared one.
    assert str(Path(os.environ["TUNESMITH_MODELS_CACHE"]) / DEFAULT_MODEL) in ran.stdout


def test_cli_uses_the_test_home_and_shows_its_jobs(tunesmith_home):
    store = open_store()
    job = store.jobs.create(
        model=DEFAULT_MODEL,
        training_file="file-abc",
        validation_file=None,
        suffix="orders",
        seed=3,
        metadata=None,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        config={},
    )
    job = store.jobs.move(job.id, "queued")
    store.close()
    assert (tunesmith_home / "tunesmith.db").exists()

    listed = tunesmith("jobs", "list")
    assert listed.code == 0, listed.output
    assert job.id in listed.stdout
    assert "queued" in listed.stdout

    shown = tunesmith("jobs", "show", job.id, "--json")
    assert shown.code == 0, shown.output
    data = json.loads(shown.stdout)
    assert (data["id"], data["object"], data["status"]) == (job.id, "fine_tuning.job", "queued")
    assert data["hyperparameters"] == {"n_epochs": 2}
    assert data["fine_tuned_model"] is None


def test_jobs_show_of_an_unknown_job():
    refused(tunesmith("jobs", "show", "ftjob-nope"), "ftjob-nope")


def test_print_config_writes_yaml_that_train_reads_back(tmp_path):
    from tunesmith.train.config import load_config

    ran = tunesmith(
        "train", "--data", "train.jsonl", "--lora-r", "8", "--epochs", "2", "--print-config"
    )
    assert ran.code == 0, ran.stderr
    path = tmp_path / "run.yaml"
    path.write_text(ran.stdout)
    config = load_config(path)
    assert config.lora.r == 8 and config.epochs == 2
    assert config.data == tmp_path / "train.jsonl"  # relative to the YAML file


def test_print_config_never_wraps_a_long_path_in_a_narrow_terminal():
    from typer.testing import CliRunner

    from tunesmith.cli import app

    long = "/data/" + "a-very-long-folder-name/" * 8 + "train.jsonl"
    ran = CliRunner().invoke(
        app, ["train", "--data", long, "--print-config"], env={"COLUMNS": "40"}
    )
    assert ran.exit_code == 0, ran.output
    assert yaml.safe_load(ran.output)["data"] == long
