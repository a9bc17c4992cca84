"""Reinforcement fine-tuning with a grader (GRPO): the built-in model learns what the grader
rewards, and a grader that fails scores 0 without stopping the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunesmith.jobs.service import create_job, validate_files
from tunesmith.store import open_store
from tunesmith.store.lifecycle import Runner
from tunesmith.train.config import load_config
from tunesmith.train.run import run

RUNNER = Runner(os.getpid(), "test-host")
QUESTIONS = [
    "is the sky blue",
    "is water wet",
    "is fire hot",
    "is the sun bright",
    "is snow cold",
    "is grass green",
    "is ice frozen water",
    "do birds have feathers",
    "do fish live in water",
    "is the ocean salty",
    "is a cat an animal",
    "is one less than two",
    "do bees make honey",
    "is the moon in the sky",
    "is sugar sweet",
    "do trees have leaves",
]
SAYS_YES = {
    "type": "string_check",
    "name": "says_yes",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "ilike",
}


def write_prompts(path: Path) -> Path:
    """Yes/no questions whose answer is yes, the answer an item field the grader reads. The base
    model answers with the word about a quarter of the time: room to learn, signal to learn from."""
    lines = [
        {"messages": [{"role": "user", "content": f"Answer with one word, yes or no: {q}?"}]}
        | {"answer": "yes"}
        for q in QUESTIONS
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def claimed_job(store, data: Path, valid: Path | None = None, **settings):
    file = store.files.add_path(data, "fine-tune")
    valid_id = store.files.add_path(valid, "fine-tune").id if valid else None
    config = load_config(None, {"method": "grpo", "suffix": "rl", **settings})
    job = create_job(store, config, training_file=file.id, validation_file=valid_id, seed=3)
    job = validate_files(store, job)
    assert job.status == "queued", store.events.list(job.id).data[0].message
    return store.jobs.claim(job.id, RUNNER, only_from={"queued"})


@pytest.mark.slow
def test_grpo_with_a_string_check_grader_raises_the_reward(tmp_path, builtin_dir):
    store = open_store()
    job = claimed_job(
        store,
        write_prompts(tmp_path / "prompts.jsonl"),
        grader=SAYS_YES,
        epochs=2,
        batch_size=4,
        max_completion_length=8,
        learning_rate=2e-4,
    )
    done = run(job.id, store)
    assert done.status == "succeeded"
    metrics = store.events.metrics(job.id)
    assert len(metrics) == 8
    rewards = [m["train_reward"] for m in metrics]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.3, rewards
    assert {"train_reward_std", "train_completion_length", "train_loss"} <= metrics[-1].keys()
    csv = (Path(done.run_dir) / "step_metrics.csv").read_text().splitlines()
    assert csv[0].startswith("step,train_loss,train_reward,train_reward_std")
    spec = store.models.resolve(done.fine_tuned_model)
    assert (spec.adapter / "adapter_model.safetensors").exists()


def test_a_failing_python_grader_scores_zero_and_the_run_goes_on(tmp_path, tiny_model_dir):
    """A grader that raises on some answers: those score 0, a warning event says why, and the
    job still succeeds. Sub-rewards of a multi grader are logged per step."""
    failing = {
        "type": "python",
        "name": "picky",
        "source": "def grade(sample, item):\n"
        "    if len(sample['output_text']) % 2:\n"
        "        raise ValueError('odd length')\n"
        "    return 1.0\n",
    }
    grader = {
        "type": "multi",
        "name": "both",
        "graders": {"picky": failing, "yes": SAYS_YES},
        "calculate_output": "0.5 * picky + 0.5 * yes",
    }
    store = open_store()
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    valid = tmp_path / "valid.jsonl"
    valid.write_text("".join(prompts.read_text().splitlines(keepends=True)[:4]))
    job = claimed_job(
        store,
        prompts,
        valid,
        model=str(tiny_model_dir),
        grader=grader,
        epochs=1,
        batch_size=8,
        max_completion_length=4,
    )
    done = run(job.id, store)
    assert done.status == "succeeded"
    warnings = [e.message for e in store.events.list(job.id, limit=100).data if e.level == "warn"]
    assert any("Grader failed on" in m and "odd length" in m for m in warnings), warnings
    metrics = store.events.metrics(job.id)
    assert {"train_reward_picky", "train_reward_yes"} <= metrics[-1].keys()
    # validation: one answer sampled per held-out prompt and graded, no loss
    assert 0.0 <= metrics[0]["valid_reward"] <= 1.0 and "valid_loss" not in metrics[0]
    assert "full_valid_reward" in metrics[-1]
    assert (Path(done.run_dir) / "loss.png").exists()
