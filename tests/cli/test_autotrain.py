"""AutoTrain Advanced's own example configs, and its `autotrain llm` flags, trained through the
`tunesmith` command on the real built-in model (a few steps each)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.store import open_store

pytestmark = pytest.mark.slow  # the real built-in model
CONFIGS = Path(__file__).parents[1] / "train" / "autotrain_configs"
N = 10  # OpenAI's (and tunesmith's) minimum training file


@pytest.fixture(autouse=True)
def fresh_store():
    """The CLI opens its store once per process; each test has its own home."""
    from tunesmith.cli.store import store

    store.cache_clear()
    yield
    store.cache_clear()


def conversations(orders: Path) -> list[list[dict]]:
    lines = (orders / "train.jsonl").read_text().splitlines()[:N]
    return [json.loads(line)["messages"] for line in lines]


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def messages_csv(tmp_path: Path, orders: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """AutoTrain's data folder with train.csv whose `messages` column holds conversations."""
    rows = [{"messages": json.dumps(turns)} for turns in conversations(orders)]
    write_csv(tmp_path / "chat" / "train.csv", rows)
    monkeypatch.setenv("AUTOTRAIN_DATA", str(tmp_path / "chat"))
    return tmp_path / "chat"


def train(*args: str):
    return CliRunner().invoke(app, ["train", *args])


def config_with(tmp_path: Path, name: str, **params) -> Path:
    """The example config, with params changed (only for the CPU-impossible test)."""
    config = yaml.safe_load((CONFIGS / name).read_text())
    config["params"].update(params)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def registered() -> str:
    store = open_store()
    job = store.jobs.list().data[0]
    assert job.status == "succeeded", job
    assert store.models.resolve(job.fine_tuned_model).adapter is not None
    return job.id


def test_the_sft_example_with_cpu_impossible_settings_trains_with_warnings(messages_csv, tmp_path):
    path = config_with(tmp_path, "smollm2.yml", unsloth=True, use_flash_attention_2=True)
    refused = train("--config", str(path), "--strict")
    assert refused.exit_code == 1 and "--strict" in str(refused.exception), refused.output
    assert not open_store().jobs.list().data  # refused before any job existed

    done = train("--config", str(path), "--epochs", "1")
    assert done.exit_code == 0, done.output
    output = " ".join(done.output.split())
    assert "AutoTrain Advanced" in output
    for words in ("QLoRA needs a CUDA GPU", "torch's AdamW", "no hub is used", "Unsloth needs a "
                  "CUDA GPU", "FlashAttention 2 needs a CUDA GPU"):  # fmt: skip
        assert words in output, words
    job_id = registered()
    warned = [e.message for e in open_store().events.list(job_id, limit=100).data]
    assert any("params.quantization" in message for message in warned)
    assert "autotrain-smollm2-finetune" in open_store().jobs.get(job_id).fine_tuned_model


def test_the_plain_text_example_trains_on_a_text_column(tmp_path, orders, monkeypatch):
    rows = [
        {"text": f"### Human: {turns[1]['content']}### Assistant: {turns[2]['content']}"}
        for turns in conversations(orders)
    ]
    write_csv(tmp_path / "text" / "train.csv", rows)
    monkeypatch.setenv("AUTOTRAIN_DATA", str(tmp_path / "text"))
    printed = train("--config", str(CONFIGS / "smollm2_guanaco.yml"), "--print-config")
    assert printed.exit_code == 0, printed.output
    assert "plain text" in " ".join(printed.output.split())
    done = train("--config", str(CONFIGS / "smollm2_guanaco.yml"))
    assert done.exit_code == 0, done.output
    registered()


def test_the_orpo_example_trains_on_preference_conversations(tmp_path, orders, monkeypatch):
    rows = []
    for turns in conversations(orders):
        prompt = turns[:2]
        worse = {"role": "assistant", "content": "I cannot help with orders."}
        rows.append({"prompt": turns[1]["content"], "chosen": turns, "rejected": [*prompt, worse]})
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("AUTOTRAIN_DATA", str(folder))
    done = train("--config", str(CONFIGS / "smollm2_orpo.yml"), "--epochs", "1")
    assert done.exit_code == 0, done.output
    registered()
    assert open_store().jobs.list().data[0].method["type"] == "dpo"  # OpenAI's name for pairs


def test_autotrain_llm_flags_give_the_yaml_settings_and_train(messages_csv):
    yaml_printed = train("--config", str(CONFIGS / "smollm2.yml"), "--print-config")
    flags = [
        "autotrain", "llm", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct", "--project-name",
        "autotrain-smollm2-finetune", "--data-path", str(messages_csv), "--chat-template",
        "tokenizer", "--text-column", "messages", "--trainer", "sft", "--block_size", "2048",
        "--model-max-length", "4096", "--epochs", "2", "--batch-size", "1", "--lr", "1e-5",
        "--peft", "--quantization", "int4", "--optimizer", "paged_adamw_8bit",
        "--gradient-accumulation", "8", "--mixed-precision", "bf16", "--merge-adapter",
        "--push-to-hub", "--log", "tensorboard",
    ]  # fmt: skip
    flags_printed = CliRunner().invoke(app, [*flags, "--print-config"])
    assert flags_printed.exit_code == 0, flags_printed.output

    def settings(output: str) -> dict:
        return yaml.safe_load(output[output.index("# tunesmith train") :])

    assert settings(flags_printed.output) == settings(yaml_printed.output)
    nothing = CliRunner().invoke(app, flags)  # no --train: AutoTrain does nothing either
    assert nothing.exit_code == 1
    done = CliRunner().invoke(app, [*flags, "--train", "--epochs", "1", "--block-size", "512"])
    assert done.exit_code == 0, done.output
    registered()


def test_a_column_mapping_naming_a_missing_column_lists_the_columns(messages_csv, tmp_path):
    config = yaml.safe_load((CONFIGS / "smollm2.yml").read_text())
    config["data"]["column_mapping"]["text_column"] = "conversation"
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(config))
    failed = train("--config", str(path))
    assert failed.exit_code == 1
    error = failed.exception
    assert "no column 'conversation'" in error.message and "'messages'" in error.hint
