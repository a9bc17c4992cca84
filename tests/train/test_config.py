"""The SFT config: precedence, YAML, errors with did-you-mean, "auto" resolved, and the pure
translations to PEFT's LoraConfig and TRL's SFTConfig."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.train.config import (
    LoraSettings,
    SFTConfig,
    auto_batch_size,
    dump_yaml,
    load_config,
    resolve,
)
from tunesmith.train.model import lora_config, trl_args


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- precedence and YAML --------------------------------------------------------------------------


def test_defaults_then_yaml_then_overrides(tmp_path):
    defaults = load_config()
    assert (defaults.epochs, defaults.tuning, defaults.lora.r, defaults.seed) == (
        "auto",
        "lora",
        16,
        0,
    )
    path = write(tmp_path / "run.yaml", "epochs: 2\nseed: 5\nlora:\n  r: 8\n  lora_dropout: 0.1\n")
    from_yaml = load_config(path)
    assert (from_yaml.epochs, from_yaml.seed, from_yaml.lora.r) == (2, 5, 8)
    assert from_yaml.lora.lora_dropout == 0.1
    assert from_yaml.batch_size == defaults.batch_size  # untouched keys keep their defaults

    both = load_config(path, {"epochs": 4, "lora": {"r": 32}})
    assert (both.epochs, both.seed, both.lora.r) == (4, 5, 32)
    assert both.lora.lora_dropout == 0.1  # a nested override replaces one key, not the section


def test_relative_data_paths_are_relative_to_the_yaml_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = write(folder / "run.yaml", "data: data/train.jsonl\nvalidation: /abs/valid.jsonl\n")
    monkeypatch.chdir(tmp_path)  # somewhere else than the file's folder
    config = load_config(path)
    assert config.data == folder / "data" / "train.jsonl"
    assert config.validation == Path("/abs/valid.jsonl")


def test_empty_yaml_gives_the_defaults(tmp_path):
    assert load_config(write(tmp_path / "empty.yaml", "")) == SFTConfig()


@pytest.mark.parametrize(
    ("values", "named", "suggested"),
    [
        ({"epoch": 3}, "'epoch'", "'epochs'"),
        ({"learning_rat": 1e-4}, "'learning_rat'", "'learning_rate'"),
        ({"lora": {"rank": 8}}, "'lora.rank'", "'lora.r'"),
        ({"lora": {"alpha": 32}}, "'lora.alpha'", "'lora.lora_alpha'"),
    ],
)
def test_unknown_keys_are_refused_with_did_you_mean(tmp_path, values, named, suggested):
    import yaml

    path = write(tmp_path / "run.yaml", yaml.safe_dump(values))
    with pytest.raises(TunesmithError) as caught:
        load_config(path)
    message = caught.value.message
    assert f"{named} is not a setting" in message
    assert f"Did you mean {suggested}?" in message
    assert str(path) in message
    with pytest.raises(TunesmithError, match="Did you mean"):
        load_config(None, values)  # flags (overrides) go through the same check


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -1}, "epochs"),
        ({"lora": {"r": 0}}, "lora.r"),
        ({"learning_rate": 5}, "learning_rate"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"batch_size": "lots"}, "batch_size"),
        ({"method": "qlora"}, "method"),
        ({"warmup_ratio": 1.5}, "warmup_ratio"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values, field):
    with pytest.raises(TunesmithError) as caught:
        load_config(None, values)
    assert f"{field}=" in caught.value.message
    assert caught.value.param in (field, field.split(".")[0])
    assert caught.value.status == 400


def test_flag_strings_are_validated_like_numbers():
    """The CLI passes every flag as a string."""
    config = load_config(None, {"epochs": "2", "learning_rate": "2e-4", "lora": {"r": "4"}})
    assert (config.epochs, config.learning_rate, config.lora.r) == (2, 2e-4, 4)
    with pytest.raises(TunesmithError, match="epochs="):
        load_config(None, {"epochs": "-1"})


def test_invalid_yaml_reports_file_and_line(tmp_path):
    path = write(tmp_path / "run.yaml", "epochs: 3\n  seed: 1\nsuffix: x\n")
    with pytest.raises(TunesmithError) as caught:
        load_config(path)
    assert f"{path}:2" in caught.value.message
    assert caught.value.param == "config"


def test_missing_and_non_mapping_yaml_are_refused(tmp_path):
    with pytest.raises(TunesmithError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(TunesmithError, match="mapping"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))


def test_dump_yaml_round_trips(tmp_path):
    config = SFTConfig(
        data=tmp_path / "train.jsonl",
        validation=tmp_path / "valid.jsonl",
        model="smollm2-135m-instruct",
        suffix="orders",
        tuning="lora",
        lora=LoraSettings(
            r=8, lora_alpha=12, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]
        ),
        epochs=2,
        batch_size=4,
        learning_rate=1e-4,
        lr_scheduler="cosine",
        max_length=256,
        seed=9,
        early_stopping_patience=2,
        packing=False,
    )
    text = dump_yaml(config)
    assert text.startswith("# tunesmith train --config")
    assert load_config(write(tmp_path / "dumped.yaml", text)) == config
    assert load_config(write(tmp_path / "default.yaml", dump_yaml(SFTConfig()))) == SFTConfig()


# --- "auto" resolved ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "epochs"),
    [(3, 25), (5, 20), (10, 10), (33, 3), (34, 3), (101, 3), (8333, 3), (10000, 2), (30000, 1)],
)
def test_auto_epochs_follow_openais_rule(n, epochs):
    assert resolve(SFTConfig(), n).epochs == epochs


def test_explicit_epochs_win():
    assert resolve(SFTConfig(epochs=7), 5).epochs == 7


@pytest.mark.parametrize("n", [1, 2, 5, 31, 32, 64, 100, 255, 256, 1000, 100_000])
def test_auto_batch_size_is_a_power_of_two_between_1_and_8(n):
    batch = auto_batch_size(n)
    assert 1 <= batch <= 8
    assert batch & (batch - 1) == 0
    assert resolve(SFTConfig(), n).batch_size == min(batch, n)


def test_auto_batch_size_grows_with_the_data():
    assert auto_batch_size(10) == 1
    assert auto_batch_size(64) == 2
    assert auto_batch_size(100_000) == 8


def test_batch_is_never_larger_than_the_data():
    resolved = resolve(SFTConfig(batch_size=16, epochs=2), 5)
    assert resolved.batch_size == 5
    assert resolved.steps_per_epoch == 1
    assert resolved.total_steps == 2


@pytest.mark.parametrize(("tuning", "rate"), [("lora", 4e-4), ("full", 4e-5)])
def test_auto_learning_rate_per_tuning(tuning, rate):
    assert resolve(SFTConfig(tuning=tuning), 100).learning_rate == rate
    assert resolve(SFTConfig(tuning=tuning, learning_rate=3e-5), 100).learning_rate == 3e-5


@pytest.mark.parametrize(
    ("n", "batch", "epochs"), [(101, 4, "auto"), (300, 8, 2), (7, 3, 1), (40, 1, 5)]
)
def test_total_steps_are_steps_per_epoch_times_epochs(n, batch, epochs):
    resolved = resolve(SFTConfig(batch_size=batch, epochs=epochs), n)
    assert resolved.steps_per_epoch == math.ceil(n / batch)
    assert resolved.total_steps == math.ceil(n / batch) * resolved.epochs
    assert resolved.eval_steps == max(1, resolved.total_steps // 10)


# --- translations to PEFT and TRL -----------------------------------------------------------------


def test_lora_config_translates_the_settings():
    peft = lora_config(
        SFTConfig(lora=LoraSettings(r=8, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    )
    assert (peft.r, peft.lora_alpha, peft.lora_dropout) == (8, 16, 0.1)  # alpha defaults to 2*r
    assert set(peft.target_modules) == {"q_proj", "v_proj"}
    assert peft.task_type == "CAUSAL_LM"

    explicit = lora_config(SFTConfig(lora=LoraSettings(r=4, lora_alpha=7)))
    assert (explicit.r, explicit.lora_alpha) == (4, 7)
    assert explicit.target_modules == "all-linear"


def test_lora_config_is_none_for_a_full_fine_tune():
    assert lora_config(SFTConfig(tuning="full")) is None


def test_trl_args_with_validation_and_bf16(tmp_path):
    config = SFTConfig(epochs=2, batch_size=4, learning_rate=2e-4, seed=11, max_length=128)
    resolved = resolve(config, 101)
    args = trl_args(config, resolved, tmp_path / "run", "cpu", "bf16", has_eval=True)
    assert args.num_train_epochs == 2
    assert args.per_device_train_batch_size == 4
    assert args.per_device_eval_batch_size == 4
    assert args.learning_rate == 2e-4
    assert args.seed == 11
    assert args.max_length == 128
    assert str(args.save_strategy.value) == "epoch"
    assert str(args.eval_strategy.value) == "steps"
    assert args.eval_steps == resolved.eval_steps
    assert args.bf16 is True
    assert args.use_cpu is True
    assert args.warmup_steps == round(config.warmup_ratio * resolved.total_steps)
    assert Path(args.output_dir).parent == tmp_path / "run"


def test_trl_args_without_validation_in_fp32(tmp_path):
    config = SFTConfig()
    args = trl_args(config, resolve(config, 50), tmp_path / "run", "cuda", "fp32", has_eval=False)
    assert str(args.eval_strategy.value) == "no"
    assert args.bf16 is False
    assert args.use_cpu is False
    assert str(args.save_strategy.value) == "epoch"


# --- one config per method -------------------------------------------------------------------------


def test_each_method_has_its_own_config_and_defaults():
    from tunesmith.train.config import DPOConfig, GRPOConfig, KTOConfig, ORPOConfig

    assert type(load_config(None, {})) is SFTConfig
    dpo = load_config(None, {"method": "dpo", "beta": 0.2, "loss_type": "ipo"})
    assert isinstance(dpo, DPOConfig) and (dpo.beta, dpo.loss_type) == (0.2, "ipo")
    assert isinstance(load_config(None, {"method": "orpo"}), ORPOConfig)
    kto = load_config(None, {"method": "kto", "undesirable_weight": 1.5})
    assert isinstance(kto, KTOConfig) and kto.undesirable_weight == 1.5
    assert load_config(None, {"method": "grpo"}).beta == 0.0  # GRPOConfig: no KL by default
    assert isinstance(load_config(None, {"method": "grpo"}), GRPOConfig)


def test_old_method_lora_full_still_means_sft_with_that_tuning():
    config = load_config(None, {"method": "full"})
    assert (config.method, config.tuning) == ("sft", "full")


def test_a_setting_of_another_method_says_which_method_has_it():
    with pytest.raises(TunesmithError) as caught:
        load_config(None, {"beta": 0.3})
    assert "'beta' is a setting of dpo, orpo, kto, grpo, not of sft" in caught.value.message
    assert caught.value.param == "beta"
    with pytest.raises(TunesmithError) as caught:
        load_config(None, {"method": "dpo", "label_smothing": 0.1})
    assert "Did you mean 'label_smoothing'?" in caught.value.message
    with pytest.raises(TunesmithError) as caught:
        load_config(None, {"method": "ppo"})
    assert "the methods are sft, dpo, orpo, kto, grpo" in caught.value.message


def test_method_settings_are_validated_naming_the_field():
    with pytest.raises(TunesmithError) as caught:
        load_config(None, {"method": "dpo", "beta": -1})
    assert caught.value.param == "beta" and "beta=-1" in caught.value.message


def test_a_grader_file_is_read_into_the_config(tmp_path):
    (tmp_path / "grader.json").write_text(
        '{"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", '
        '"reference": "{{item.answer}}", "operation": "eq"}'
    )
    (tmp_path / "score.py").write_text("def grade(sample, item):\n    return 1.0\n")
    (tmp_path / "run.yaml").write_text("method: grpo\ngrader: grader.json\n")
    from_yaml = load_config(tmp_path / "run.yaml")  # relative to the YAML file
    assert from_yaml.grader["operation"] == "eq"
    from_python = load_config(None, {"method": "grpo", "grader": str(tmp_path / "score.py")})
    assert from_python.grader == {
        "type": "python",
        "name": "score",
        "source": "def grade(sample, item):\n    return 1.0\n",
    }
    (tmp_path / "bad.json").write_text('{"type": \n')
    with pytest.raises(TunesmithError) as caught:
        load_config(None, {"method": "grpo", "grader": str(tmp_path / "bad.json")})
    assert "bad.json:2" in caught.value.message


def test_auto_learning_rates_are_lower_for_preference_methods():
    assert resolve(load_config(None, {"method": "dpo"}), 100).learning_rate == 5e-5
    assert (
        resolve(load_config(None, {"method": "dpo", "tuning": "full"}), 100).learning_rate == 5e-6
    )
