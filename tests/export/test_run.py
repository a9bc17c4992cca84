"""export(): options refused before anything is written, the temporary folder moved into place
only when complete, a full disk leaving nothing behind, and a failed check marked loudly."""

from __future__ import annotations

import errno
import json
import sys
import types
from pathlib import Path

import pytest

from tunesmith.errors import DiskFullError, TunesmithError
from tunesmith.export import run as export_run
from tunesmith.export.check import CheckResult, prompts_from
from tunesmith.export.run import (
    UNVERIFIED,
    NotVerifiedError,
    conversations_of,
    export,
    shared_system,
)

SYSTEM = "You turn order requests into JSON."


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    rows = [
        {"messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Ship {n} lamps to Oslo"},
            {"role": "assistant", "content": json.dumps({"item": "lamp", "qty": n})},
        ]}
        for n in range(1, 4)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_a_merged_export_is_checked_on_the_training_prompts(ft_spec, data, tmp_path):
    stages = []
    result = export(
        ft_spec, "merged", tmp_path / "out", data=data, progress=lambda s, d, t: stages.append(s)
    )
    assert result.check.passed and result.check.agreements == [1.0, 1.0, 1.0]
    assert result.check.prompts == [
        "Ship 1 lamps to Oslo",
        "Ship 2 lamps to Oslo",
        "Ship 3 lamps to Oslo",
    ]
    assert (tmp_path / "out" / "model.safetensors").exists() and not (
        tmp_path / "out" / UNVERIFIED
    ).exists()
    assert leftovers(tmp_path) == [] and stages[-1] == "done"
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755  # readable by a server


@pytest.mark.parametrize(
    ("fmt", "quant"),
    [("merged", "q4_0"), ("adapter", "f16"), ("gguf", "f32"), ("ollama", "q4_k_m")],
)
def test_a_quant_the_format_cannot_take_is_refused_before_writing(ft_spec, tmp_path, fmt, quant):
    with pytest.raises(TunesmithError, match=f"cannot take --quant {quant}") as info:
        export(ft_spec, fmt, tmp_path / "out", quant=quant)
    assert info.value.param == "quant" and not (tmp_path / "out").exists()


def test_a_non_empty_folder_is_replaced_only_with_force(ft_spec, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(TunesmithError, match="not empty"):
        export(ft_spec, "adapter", out, check=False)
    assert (out / "mine.txt").read_text() == "keep me"
    export(ft_spec, "adapter", out, force=True, check=False)
    assert not (out / "mine.txt").exists() and (out / "adapter_config.json").exists()
    assert leftovers(tmp_path) == []


def test_a_full_disk_leaves_nothing_that_looks_finished(ft_spec, tmp_path, monkeypatch):
    def full(spec, folder, dtype):
        (folder / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_run, "write_merged", full)
    with pytest.raises(DiskFullError, match="nothing of it was kept"):
        export(ft_spec, "merged", tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_a_failed_check_keeps_the_files_marked_not_verified(ft_spec, tmp_path, monkeypatch):
    def disagreeing(kind, path, spec, prompts, quant=None):
        return CheckResult(kind, quant, ["hi", "ho"], [1.0, 0.5], threshold=1.0, seconds=0.1)

    monkeypatch.setattr(export_run, "check_export", disagreeing)
    with pytest.raises(NotVerifiedError, match="do not trust it") as info:
        export(ft_spec, "adapter", tmp_path / "out")
    assert info.value.code == "export_not_verified" and info.value.result.check.mean == 0.75
    assert "did NOT pass" in (tmp_path / "out" / UNVERIFIED).read_text()


def test_an_ollama_export_writes_the_modelfile_with_the_shared_system(
    ft_spec, data, tmp_path, monkeypatch
):
    # The GGUF writer is tested on its own (tests/export/test_gguf.py); here it only leaves a file.
    def write_gguf(model_dir, out_file, quant, chat_template, progress):
        assert (model_dir / "config.json").exists() and "<|im_start|>" in chat_template
        out_file.write_bytes(b"GGUF")

    monkeypatch.setitem(
        sys.modules, "tunesmith.export.gguf", types.SimpleNamespace(write_gguf=write_gguf)
    )
    result = export(ft_spec, "ollama", tmp_path / "out", data=data, check=False)
    text = (tmp_path / "out" / "Modelfile").read_text()
    assert result.quant == "f16" and result.files == ["Modelfile", "model.gguf"]
    assert (
        f'SYSTEM """{SYSTEM}"""' in text
        and "ollama create ft-tiny-local-export-ab12cd34 -f Modelfile" in text
    )


def test_prompts_and_the_shared_system_come_from_the_data(data):
    conversations = conversations_of(data)
    assert shared_system(conversations) == SYSTEM
    assert prompts_from(conversations, n=2)[1] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Ship 2 lamps to Oslo"},
    ]
    no_system = conversations[1].model_copy(update={"messages": conversations[1].messages[1:]})
    assert shared_system([conversations[0], no_system]) is None


def test_preference_kto_and_rft_data_give_their_prompts(tmp_path):
    system = {"role": "system", "content": SYSTEM}
    user = {"role": "user", "content": "Ship 2 lamps to Oslo"}
    answer = [{"role": "assistant", "content": "ok"}]
    lines = {
        "pairs.jsonl": {
            "input": {"messages": [system, user]},
            "preferred_output": answer,
            "non_preferred_output": [{"role": "assistant", "content": "no"}],
        },
        "kto.jsonl": {"prompt": [system, user], "completion": answer, "label": True},
        "rft.jsonl": {"messages": [system, user], "answer": "ok"},
    }
    for name, line in lines.items():
        path = tmp_path / name
        path.write_text((json.dumps(line) + "\n") * 3)
        conversations = conversations_of(path)
        assert shared_system(conversations) == SYSTEM, name
        assert prompts_from(conversations, n=1) == [[system, user]], name
