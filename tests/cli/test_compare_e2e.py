"""`tunesmith compare` end to end on the real built-in model and the demo task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.store import open_store

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "tunesmith")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=os.environ, timeout=1200
    )


def test_compare_on_the_demo_task(orders, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join((orders / "train.jsonl").read_text().splitlines(keepends=True)[:48]))
    trained = run(
        "train", "--data", str(train), "--epochs", "2", "--batch-size", "4", "--suffix", "cmp"
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    tuned = open_store().jobs.list().data[0].fine_tuned_model

    out = tmp_path / "report"
    done = run(
        "compare", "--train", str(train), "--test", str(orders / "test.jsonl"),
        "--fine-tuned", tuned, "--limit", "12", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((out / "report.json").read_text())
    by_name = {s["name"]: s for s in data["strategies"]}
    assert set(by_name) == {"zero-shot", "few-shot", "rag", "fine-tuned"}
    assert data["metric"] == "json-fields" and data["n"] == 12
    assert by_name["fine-tuned"]["metric"]["mean"] > by_name["zero-shot"]["metric"]["mean"] + 0.3
    assert by_name["fine-tuned"]["prompt_tokens"] == by_name["zero-shot"]["prompt_tokens"]
    assert data["training"]["trained_tokens"] > 0 and data["training"]["seconds"] > 0
    assert data["probes"]["base"]["mean"] >= 0 and len(data["probes"]["base"]["outputs"]) >= 50
    assert "<svg" in (out / "report.html").read_text()
    assert (
        data["recommendation"]["headline"] in done.stdout.replace("\n", " ")
        or data["recommendation"]["verdict"] in done.stdout
    )


def test_compare_refuses_bad_input_without_a_traceback(orders, tmp_path):
    no_model = run(
        "compare", "--train", str(orders / "train.jsonl"), "--test", str(orders / "test.jsonl")
    )
    assert no_model.returncode == 1 and "--fine-tuned" in no_model.stderr
    assert "Traceback" not in no_model.stderr
    bad_prices = tmp_path / "p.yaml"
    bad_prices.write_text("base: 1\n")
    unknown = run(
        "compare", "--train", str(orders / "train.jsonl"), "--test", str(orders / "test.jsonl"),
        "--fine-tuned", "ft:nope", "--metric", "bleu",
    )  # fmt: skip
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
