"""Shared fixtures: a throwaway TUNESMITH_HOME per test, and the real built-in tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunesmith.models.catalog import DEFAULT_MODEL


@pytest.fixture(autouse=True)
def tunesmith_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own home; get_settings() reads the variable on each call."""
    home = tmp_path / "tunesmith-home"
    monkeypatch.setenv("TUNESMITH_HOME", str(home))
    return home


def model_cache() -> Path:
    """Where the built-in model is converted once per machine, not once per test run (~20 s)."""
    default = Path.home() / ".cache" / "tunesmith-tests"
    return Path(os.environ.get("TUNESMITH_TEST_CACHE", default))


@pytest.fixture(scope="session")
def tokenizer():
    """The real SmolLM2 tokenizer and chat template, from the built-in model's cached copy."""
    from transformers import AutoTokenizer

    from tunesmith.models.loading import builtin_folder

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNESMITH_HOME", str(model_cache()))
        folder = builtin_folder(DEFAULT_MODEL)
    return AutoTokenizer.from_pretrained(folder)
