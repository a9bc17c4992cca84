"""`tunesmith export`, run as the real console script on a registered ft: model: the merged round
trip with its report, and every kind of bad input refused with nothing left that looks finished."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.models.spec import ModelSpec
from tunesmith.store import open_store

EXE = str(Path(sys.executable).parent / "tunesmith")
NAME = "ft:tiny:local:cli:Zz98Yy76"


def tunesmith(*args: str | Path, preexec_fn=None) -> tuple[int, str]:
    env = {**os.environ, "COLUMNS": "400"}  # wide, so that Rich does not fold the lines looked for
    done = subprocess.run(
        [EXE, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=preexec_fn,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def ft_model(tmp_path: Path, tiny_model_dir: Path, tokenizer) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    lora = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora).save_pretrained(
        adapter
    )
    spec = ModelSpec(NAME, "fine-tuned", str(tiny_model_dir), str(tiny_model_dir), adapter=adapter)
    open_store().models.register(spec, None)
    return NAME


def refused(code: int, output: str, *named: str) -> None:
    assert code == 1 and "Error:" in output and "Traceback" not in output, output
    for text in named:
        assert text in output, output


def test_a_merged_export_reports_agreement_time_and_next_commands(ft_model, tmp_path):
    code, output = tunesmith("export", ft_model, "--format", "merged", "--out", tmp_path / "out")
    assert code == 0, output
    assert output.count("  agreement 100.0%  ") == 3 and "mean agreement 100.0%" in output, output
    assert f"vllm serve {tmp_path / 'out'}" in output and "Wrote " in output
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_bad_input_is_refused_before_anything_is_written(ft_model, tmp_path):
    out = tmp_path / "out"
    refused(
        *tunesmith("export", "no-such-model", "--format", "merged", "--out", out), "no-such-model"
    )
    refused(
        *tunesmith("export", ft_model, "--format", "gguf", "--quant", "q4_k_m", "--out", out),
        "q4_k_m",
    )
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused(
        *tunesmith("export", ft_model, "--format", "adapter", "--out", out), "not empty", "--force"
    )
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def _limit_file_size() -> None:
    # Writes past 1 MB fail with EFBIG (like a full disk) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_a_full_disk_leaves_nothing_at_the_out_folder(ft_model, tmp_path):
    out = tmp_path / "exports" / "merged"
    code, output = tunesmith(
        "export", ft_model, "--format", "merged", "--out", out, preexec_fn=_limit_file_size
    )
    refused(code, output, "No space left")
    assert not out.exists() and list(out.parent.iterdir()) == []
