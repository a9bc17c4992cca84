"""AutoTrain Advanced's configs and flags as tunesmith settings: the translation, key by key, with
no training (the trainings are in tests/cli/test_autotrain.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tunesmith.data.readers import read
from tunesmith.data.records import TextExample
from tunesmith.data.render import IGNORE, encode
from tunesmith.errors import TunesmithError
from tunesmith.models import catalog
from tunesmith.train import autotrain
from tunesmith.train.config import load_config

CONFIGS = Path(__file__).parent / "autotrain_configs"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder as AutoTrain reads it: {split}.csv, with a messages and a text column."""
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [
        {
            "messages": json.dumps(
                [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
            ),
            "text": f"### Human: q{i} ### Assistant: a{i}",
        }
        for i in range(10)
    ]
    for split in ("train", "valid"):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["messages", "text"])
            writer.writeheader()
            writer.writerows(rows)
    monkeypatch.setenv("AUTOTRAIN_DATA", str(folder))
    return folder


def translated(name: str, tmp_path: Path, **changes) -> tuple[dict, list[autotrain.Note]]:
    """An example config, optionally with params changed, as tunesmith values and notes."""
    config = yaml.safe_load((CONFIGS / name).read_text())
    config["params"].update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    translation = autotrain.from_yaml(config, path, cuda=False)
    return translation.values, translation.notes


def keys(notes: list[autotrain.Note], level: str = "warning") -> set[str]:
    return {n.key for n in notes if n.level == level}


def test_the_smollm2_sft_example_maps_to_lora_sft_on_messages(data_dir, tmp_path):
    values, notes = translated("smollm2.yml", tmp_path)
    assert values["method"] == "sft" and values["tuning"] == "lora"
    assert values["data"] == str(data_dir / "train.csv") and "validation" not in values
    assert values["mapping"] == {"messages": "messages"}
    assert values["batch_size"] == 8  # batch_size 1 x gradient_accumulation 8
    assert values["learning_rate"] == 1e-5 and values["epochs"] == 2
    assert values["max_length"] == 2048 and values["suffix"] == "autotrain-smollm2-finetune"
    assert values["precision"] == "auto" and "load_in_4bit" not in values
    assert keys(notes) == {"params.quantization", "params.optimizer", "hub.push_to_hub"}
    optimizer = next(n for n in notes if n.key == "params.optimizer")
    assert "adamw_torch" in optimizer.message  # the substitute is named
    quantization = next(n for n in notes if n.key == "params.quantization")
    assert "CUDA" in quantization.message and "LoRA" in quantization.message


def test_plain_text_and_preference_examples(data_dir, tmp_path):
    values, notes = translated("smollm2_guanaco.yml", tmp_path)
    assert values["mapping"] == {"text": "text"}  # chat_template: null
    assert "data.column_mapping.text_column" in keys(notes, "info")
    values, notes = translated("smollm2_orpo.yml", tmp_path)
    assert values["method"] == "orpo" and values["mapping"] == {
        "chosen": "chosen",
        "rejected": "rejected",
    }  # with a chat template the prompt is the conversations' shared start, as in AutoTrain
    assert values["max_length"] == 1024 and values["precision"] == "auto"
    assert "params.mixed_precision" in keys(notes)  # fp16


@pytest.mark.parametrize(
    ("param", "value", "setting", "expected"),
    [
        ("lr", 2e-4, "learning_rate", 2e-4),
        ("epochs", 3, "epochs", 3),
        ("warmup_ratio", 0.2, "warmup_ratio", 0.2),
        ("weight_decay", 0.01, "weight_decay", 0.01),
        ("seed", 7, "seed", 7),
        ("lora_r", 8, "lora.r", 8),
        ("lora_alpha", 16, "lora.lora_alpha", 16),
        ("lora_dropout", 0.1, "lora.lora_dropout", 0.1),
        ("project_name", "my-run", "suffix", "my-run"),
        ("block_size", 256, "max_length", 256),
        ("block_size", -1, "max_length", 1024),
        ("block_size", [128, 512], "max_length", 512),
        ("scheduler", "cosine", "lr_scheduler", "cosine"),
        ("scheduler", "constant_with_warmup", "lr_scheduler", "constant"),
        ("mixed_precision", "bf16", "precision", "auto"),
        ("mixed_precision", None, "precision", "fp32"),
        ("peft", False, "tuning", "full"),
        ("target_modules", "q_proj, v_proj", "lora.target_modules", ["q_proj", "v_proj"]),
        ("trainer", "default", "method", "sft"),
        ("trainer", "dpo", "beta", 0.1),
    ],
)
def test_each_param_maps_to_its_setting(data_dir, param, value, setting, expected):
    written = {"model": "x", "data_path": str(data_dir), "peft": True, "quantization": None}
    extra = {"rejected_text_column": "text"} if value == "dpo" else {}
    values = autotrain.translate({**written, **extra, param: value}, data_dir, cuda=False).values
    node = values
    for part in setting.split("."):
        node = node[part]
    assert node == expected


def test_every_param_is_mapped_or_answered():
    """No AutoTrain param falls through unsaid: each is renamed, answered, or has its rule."""
    ruled = {
        "model", "data_path", "train_split", "valid_split", "trainer", "batch_size",
        "gradient_accumulation", "block_size", "peft", "quantization", "scheduler",
        "mixed_precision", "optimizer", "target_modules", "dpo_beta", "model_ref",
        "eval_strategy", "chat_template", "text_column", "prompt_text_column",
        "rejected_text_column",
    }  # fmt: skip
    handled = set(autotrain.RENAMED) | set(autotrain.ANSWERS) | ruled
    assert set(autotrain.LLMParams.model_fields) <= handled


def test_int4_on_a_gpu_is_qlora_and_dpo_beta_is_beta(data_dir):
    written = {"model": "x", "data_path": str(data_dir), "peft": True, "quantization": "int4"}
    assert autotrain.translate(written, data_dir, cuda=True).values["load_in_4bit"] is True
    dpo = {**written, "trainer": "dpo", "dpo_beta": 0.3, "rejected_text_column": "text"}
    assert autotrain.translate(dpo, data_dir, cuda=False).values["beta"] == 0.3


def test_strict_refuses_what_can_only_be_approximated(data_dir, tmp_path):
    config = yaml.safe_load((CONFIGS / "smollm2.yml").read_text())
    config["params"] |= {"unsloth": True, "use_flash_attention_2": True}
    with pytest.raises(TunesmithError) as caught:
        autotrain.from_yaml(config, tmp_path / "c.yml", strict=True, cuda=False)
    for word in ("quantization", "paged_adamw_8bit", "push_to_hub", "unsloth", "flash"):
        assert word in caught.value.message.lower()


def test_load_config_detects_the_format_and_says_so(data_dir):
    notes: list[autotrain.Note] = []
    config = load_config(CONFIGS / "smollm2.yml", {"epochs": 1}, notes=notes)
    assert config.method == "sft" and config.epochs == 1  # flags still override
    assert "AutoTrain" in notes[0].message
    assert config.mapping == {"messages": "messages"}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"task": "llm-sftt"}, ["'llm-sftt'", "Did you mean 'llm-sft'"]),
        ({"task": "llm-reward"}, ["reward"]),
        ({"tsk": "llm-sft"}, ["'tsk'", "Did you mean 'task'"]),
        ({"params": {"lerning_rate": 1}}, ["params.lerning_rate", "Did you mean 'lr'"]),
        ({"params": {"batchsize": 1}}, ["Did you mean 'batch_size'"]),
        ({"params": {"epochs": "many"}}, ["params.epochs"]),
        ({"data": {"path": "nowhere/at-all"}}, ["does not exist", "hub dataset"]),
        (
            {"data": {"path": "${AUTOTRAIN_DATA", "train_split": "train"}},
            ["data.path", "malformed"],
        ),
        ({"project_name": "${NOT_SET_ANYWHERE}"}, ["project_name", "NOT_SET_ANYWHERE"]),
        ({"data": {"path": "${AUTOTRAIN_DATA}", "train_split": "test"}}, ["test.csv", "train.csv"]),
        ({"data": {"path": "${AUTOTRAIN_DATA}", "chat_template": "llama"}}, ["chat_template"]),
    ],
)
def test_bad_input_is_a_located_error(data_dir, tmp_path, change, words):
    config = yaml.safe_load((CONFIGS / "smollm2.yml").read_text())
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(TunesmithError) as caught:
        load_config(path)
    text = f"{caught.value.message} {caught.value.hint}"
    for word in words:
        assert word in text, text


def test_an_unset_hub_token_is_no_error(data_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    config = yaml.safe_load((CONFIGS / "smollm2.yml").read_text())
    assert autotrain.resolve_variables(config)["hub"]["token"] is None


def test_hub_ids_resolve_to_the_built_in_model_or_the_local_cache(data_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    written = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "data_path": str(data_dir)}
    values = autotrain.translate(written, data_dir, cuda=False).values
    assert catalog.resolve(values["model"]).kind == "builtin"
    with pytest.raises(TunesmithError) as caught:
        catalog.resolve("someone/not-downloaded")
    assert "local folder" in caught.value.hint
    # A model downloaded before sits in the cache as models--ORG--NAME/snapshots/COMMIT.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    spec = catalog.resolve("someone/cached")
    assert spec.weights == str(repo / "snapshots" / "abc123")


def test_a_text_column_is_plain_text_with_the_loss_on_every_token(data_dir, tokenizer):
    result = read(data_dir / "train.csv", mapping={"text": "text"})
    assert result.kind == "text" and isinstance(result.records[0], TextExample)
    encoded = encode(tokenizer, result.records[0])
    assert IGNORE not in encoded.labels and encoded.input_ids[-1] == tokenizer.eos_token_id
    assert "### Human: q0" in tokenizer.decode(encoded.input_ids)
    chats = read(data_dir / "train.csv", mapping={"messages": "messages"})
    assert chats.kind == "chat" and chats.records[0].answer.content == "a0"


def test_a_csv_cell_in_pythons_repr_is_a_conversation(tmp_path):
    """pandas writes a list of dicts into a CSV as its repr; AutoTrain reads it so, and so here."""
    path = tmp_path / "train.csv"
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "it's me"}]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["conversation"], [repr(turns)]])
    record = read(path, mapping={"messages": "conversation"}).records[0]
    assert record.answer.content == "it's me"
