"""One built-in model trained through `tunesmith train` for the whole session: the train test
checks its run, the compare test ranks it. Training it once saves a minute of CI per user."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tunesmith.store import open_store
from tunesmith.store.jobs import JobRow

CLI = str(Path(sys.executable).parent / "tunesmith")


@dataclass(frozen=True)
class Trained:
    home: Path  # its own TUNESMITH_HOME: a test using it sets the variable to this
    train: Path  # the training file
    job: JobRow  # the finished job


@pytest.fixture(scope="session")
def demo_model(
    tmp_path_factory: pytest.TempPathFactory, orders: Path, models_cache: Path
) -> Trained:
    """The built-in model on the first 32 demo examples, validated on 8: 2 epochs of batch 4,
    16 steps."""
    folder = tmp_path_factory.mktemp("demo-model")
    home = folder / "tunesmith-home"
    train, valid = folder / "train.jsonl", folder / "valid.jsonl"
    for source, target, n in (("train", train, 32), ("validation", valid, 8)):
        lines = (orders / f"{source}.jsonl").read_text().splitlines(keepends=True)
        target.write_text("".join(lines[:n]))
    env = {**os.environ, "TUNESMITH_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env["TUNESMITH_MODELS_CACHE"] = str(models_cache)
    done = subprocess.run(
        [CLI, "train", "--data", str(train), "--validation", str(valid), "--epochs", "2",
         "--batch-size", "4", "--suffix", "e2e"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_HOME", str(home))
        (job,) = open_store().jobs.list().data
    return Trained(home=home, train=train, job=job)
