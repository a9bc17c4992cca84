"""`tunesmith compare` end to end on the real built-in model and the demo task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.store import open_store
from tunesmith.store.jobs import JobRow

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "tunesmith")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env=os.environ, timeout=1200
    )


def train_first(orders: Path, tmp_path: Path, n: int, *flags: str) -> tuple[Path, JobRow]:
    """`tunesmith train` on the first `n` demo examples: their file and the finished job."""
    train = tmp_path / "train.jsonl"
    train.write_text("".join((orders / "train.jsonl").read_text().splitlines(keepends=True)[:n]))
    trained = run("train", "--data", str(train), *flags)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    return train, open_store().jobs.list().data[0]


def test_compare_on_the_demo_task(demo_model, orders, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_HOME", str(demo_model.home))
    train, tuned = demo_model.train, demo_model.job.fine_tuned_model

    out = tmp_path / "report"
    done = run(
        "compare", "--train", str(train), "--test", str(orders / "test.jsonl"),
        "--fine-tuned", tuned, "--limit", "12", "--no-probes", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((out / "report.json").read_text())
    by_name = {s["name"]: s for s in data["strategies"]}
    assert set(by_name) == {"zero-shot", "few-shot", "rag", "fine-tuned"}
    assert data["metric"] == "json-fields" and data["n"] == 12
    assert by_name["fine-tuned"]["metric"]["mean"] > by_name["zero-shot"]["metric"]["mean"] + 0.3
    assert by_name["fine-tuned"]["prompt_tokens"] == by_name["zero-shot"]["prompt_tokens"]
    assert data["training"]["trained_tokens"] > 0 and data["training"]["seconds"] > 0
    # the probes' run is tests/evals/test_compare.py's: here they would double the decoding
    assert not data["probes"] and "probes were not run (--no-probes)" in done.stdout
    assert "<svg" in (out / "report.html").read_text()
    assert "Before you fine-tune: the questions" in done.stdout
    assert data["questions"]["evidence"].startswith("12 test examples")
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


def test_compare_ranks_two_fine_tuned_models_and_draws_a_learning_curve(orders, tmp_path):
    """One small training for both (kept small: 20 examples, 2 epochs of 2 steps, 4 held-out
    examples): its epoch-1 checkpoint and its final model ranked against the prompting strategies
    of the built-in model, the best one named; and the learning curve, whose 10-example subset is
    trained with the final model's settings and whose full point is that model, reused."""
    train, job = train_first(
        orders, tmp_path, 20, "--epochs", "2", "--batch-size", "10", "--suffix", "two"
    )
    store = open_store()
    first = min(store.checkpoints.list(job.id).data, key=lambda c: c.step_number).model_name
    models = [job.fine_tuned_model, first]

    out = tmp_path / "report"
    done = run(
        "compare", "--train", str(train), "--test", str(orders / "test.jsonl"),
        "--fine-tuned", models[0], "--fine-tuned", models[1], "--learning-curve",
        "--limit", "4", "--shots", "1", "--no-probes", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((out / "report.json").read_text())
    rows = {s["name"]: s for s in data["strategies"]}
    assert [rows["fine-tuned #1"]["model"], rows["fine-tuned #2"]["model"]] == models
    rec = data["recommendation"]
    means = [rows[name]["metric"]["mean"] for name in rec["ranking"]]
    assert sorted(rec["ranking"]) == sorted(rows) and means == sorted(means, reverse=True)
    best = next(name for name in rec["ranking"] if name.startswith("fine-tuned"))
    assert rec["fine_tuned"] == best and rows[best]["model"] in rec["headline"]
    assert rows["fine-tuned #1"]["training"]["trained_tokens"] > 0
    printed = done.stdout.replace("\n", " ")
    assert "fine-tuned #2" in printed and "ranking:" in printed

    curve = data["learning_curve"]
    assert [p["examples"] for p in curve["points"]] == [10, 20]
    assert curve["points"][1]["model"] == models[0] and curve["points"][1]["given"]
    assert curve["points"][1]["metric"]["mean"] == rows["fine-tuned #1"]["metric"]["mean"]
    subset_job = store.jobs.list().data[0]
    assert subset_job.fine_tuned_model == curve["points"][0]["model"]
    assert subset_job.config["epochs"] == 2 and subset_job.config["batch_size"] == 10
    assert f"Would more data help? {curve['verdict'].split(':')[0]}" in done.stdout
    assert "Learning curve" in (out / "report.html").read_text()
