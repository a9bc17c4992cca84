"""The new-job page's endpoints: the methods' settings, and a job's plan (files checked, "auto"
resolved, the estimate, the same job as a CLI command and YAML) — nothing stored."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.data.checks import check
from tunesmith.train.config import METHOD_CONFIGS, load_config, parse_config, resolve

MODEL = "smollm2-135m-instruct"


def example(i: int, role: str = "user") -> dict:
    return {"messages": [{"role": role, "content": f"Say {i}."}, {"role": "assistant", "content": str(i)}]}  # fmt: skip


def upload(http: httpx.Client, name: str, data: bytes) -> str:
    answer = http.post("/files", data={"purpose": "fine-tune"}, files={"file": (name, data)})
    answer.raise_for_status()
    return answer.json()["id"]


def lines(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.fixture
def http(serve) -> httpx.Client:
    with httpx.Client(base_url=serve(), timeout=60) as client:
        yield client


def test_methods_list_every_setting_of_each_config(http) -> None:
    methods = {m["name"]: m for m in http.get("/fine_tuning/methods").json()["data"]}
    assert list(methods) == list(METHOD_CONFIGS)
    assert methods["grpo"]["openai_type"] == "reinforcement"
    assert methods["kto"]["data_kind"] == "kto"
    for name, method in methods.items():
        paths = {tuple(f["path"]) for f in method["fields"]}
        assert ("lora", "r") in paths and ("epochs",) in paths
        assert ("beta",) in paths or name == "sft"
    epochs = next(f for f in methods["sft"]["fields"] if f["name"] == "epochs")
    assert epochs["auto"] and epochs["default"] == "auto" and epochs["flag"] == "--epochs"
    assert epochs["description"] and epochs["group"] == "How"


def test_a_plan_resolves_auto_and_estimates_like_the_data_check(
    http, orders, tokenizer, tmp_path
) -> None:
    train = upload(http, "orders-train.jsonl", (orders / "validation.jsonl").read_bytes())
    records = [example(i) for i in range(12)]
    valid = upload(http, "my valid.jsonl", lines(records))
    body = {
        "model": MODEL,
        "training_file": train,
        "validation_file": valid,
        "suffix": "plan",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        "config": {"lora": {"r": 8}, "packing": False, "max_length": 512},
    }
    answer = http.post("/fine_tuning/plans", json=body)
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert plan["ok"] and plan["report"]["errors"] == []

    config = parse_config(plan["config"])
    assert (config.epochs, config.lora.r, config.packing, config.suffix) == (2, 8, False, "plan")
    assert config.batch_size == "auto" and config.learning_rate == "auto"
    report = check(orders / "validation.jsonl", tokenizer, max_length=512, n_epochs=2)
    resolved = resolve(config, report.n_examples)
    assert plan["resolved"] == resolved.model_dump()
    assert plan["resolved"]["batch_size"] >= 1 and plan["resolved"]["learning_rate"] == 4e-4
    estimate = plan["estimate"]
    assert estimate["examples"] == report.n_examples == 40
    assert estimate["validation_examples"] == 12
    assert estimate["epochs"] == 2
    assert estimate["tokens"] == report.stats.tokens_per_epoch
    assert estimate["billed_tokens"] == report.stats.billed_tokens == 2 * estimate["tokens"]
    assert estimate["seconds"] == pytest.approx(report.stats.estimated_seconds)
    assert estimate["total_steps"] == resolved.total_steps

    # The command names the uploaded files and is one the CLI accepts, giving the same config.
    command = plan["command"]
    assert command.startswith("tunesmith train --data orders-train.jsonl")
    assert "--validation 'my valid.jsonl'" in command and "--lora-r 8" in command
    assert "--no-packing" in command and "--epochs 2" in command
    printed = CliRunner().invoke(app, [*shlex.split(command)[1:], "--print-config"])
    assert printed.exit_code == 0, printed.output
    from_cli = parse_config(yaml.safe_load(printed.output))
    expected = config.model_copy(
        update={"data": Path("orders-train.jsonl"), "validation": Path("my valid.jsonl")}
    )
    assert from_cli == expected
    # ... and so is the YAML, as a --config file beside the data
    (tmp_path / "run.yaml").write_text(plan["yaml"])
    from_yaml = load_config(tmp_path / "run.yaml")
    assert from_yaml == expected.model_copy(
        update={"data": tmp_path / "orders-train.jsonl", "validation": tmp_path / "my valid.jsonl"}
    )


def test_a_plan_of_bad_data_answers_200_with_the_errors(http) -> None:
    records = [example(i) for i in range(12)]
    records[4] = example(4, role="bot")
    bad = upload(http, "bad.jsonl", lines(records))
    answer = http.post("/fine_tuning/plans", json={"model": MODEL, "training_file": bad})
    assert answer.status_code == 200
    plan = answer.json()
    assert not plan["ok"] and plan["estimate"] is None and plan["resolved"] is None
    assert [(e["line"], e["field"]) for e in plan["report"]["errors"]] == [(5, "messages[0].role")]
    assert plan["command"] == "tunesmith train --data bad.jsonl"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"training_file": "file-nope"}, "training_file"),
        ({"validation_file": "file-nope"}, "validation_file"),
        ({"model": "no-such-model"}, "model"),
        ({"config": {"lora": {"r": 0}}}, "config.lora.r"),
        ({"config": {"data": "/etc/passwd"}}, "config.data"),
        ({"config": {"beta": 0.2}}, "config.beta"),
        ({"method": {"type": "reinforcement"}}, "method.reinforcement.grader"),
    ],
)
def test_bad_plan_requests_are_400_naming_the_field(http, change, param) -> None:
    train = upload(http, "t.jsonl", lines([example(i) for i in range(12)]))
    answer = http.post(
        "/fine_tuning/plans", json={"model": MODEL, "training_file": train, **change}
    )
    assert answer.status_code in (400, 404), answer.text
    error = answer.json()["error"]
    assert error["param"] == param, error
    assert error["message"]


def test_a_job_failed_on_its_data_locates_the_line_in_its_failure_event(http) -> None:
    records = [example(i) for i in range(12)]
    records[6] = example(6, role="bot")
    bad = upload(http, "bad.jsonl", lines(records))
    job = http.post("/fine_tuning/jobs", json={"model": MODEL, "training_file": bad}).json()
    deadline = time.monotonic() + 60
    while job["status"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.2)
        job = http.get(f"/fine_tuning/jobs/{job['id']}").json()
    assert job["status"] == "failed" and "line 7" in job["error"]["message"]
    failed = http.get(f"/fine_tuning/jobs/{job['id']}/events").json()["data"][0]
    assert failed["level"] == "error"
    assert failed["data"]["file_id"] == bad and failed["data"]["line"] == 7
    assert failed["data"]["field"] == "messages[0].role"


def test_controls_say_which_statuses_allow_cancel_pause_and_resume(http) -> None:
    controls = http.get("/fine_tuning/controls").json()
    assert controls["cancel"] == sorted(["validating_files", "queued", "running", "paused"])
    assert controls["pause"] == ["queued", "running"] and controls["resume"] == ["paused"]
    assert controls["final"] == ["cancelled", "failed", "succeeded"]
