"""Model names resolved to weights, the catalog rows (`models list`), and parameter counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunesmith.errors import NotFoundError
from tunesmith.models.catalog import BUILTINS, DEFAULT_MODEL, resolve
from tunesmith.models.listing import builtin_rows, extra_rows, trained_rows
from tunesmith.models.loading import count_parameters, package_folder
from tunesmith.models.spec import ModelSpec

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_builtin_name_resolves_to_itself():
    spec = resolve(DEFAULT_MODEL)
    assert spec == ModelSpec(
        name=DEFAULT_MODEL, kind="builtin", base=DEFAULT_MODEL, weights=DEFAULT_MODEL
    )
    assert spec.adapter is None


def test_local_folder_with_config_json_resolves_by_path(tmp_path, monkeypatch):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    spec = resolve(str(folder))
    assert (spec.kind, spec.weights, spec.base) == (
        "local",
        str(folder.resolve()),
        str(folder.resolve()),
    )
    monkeypatch.chdir(tmp_path)
    assert resolve("my-model").weights == str(folder.resolve())  # relative paths work too


def test_folder_without_config_json_is_not_a_model(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(NotFoundError):
        resolve(str(tmp_path / "weights"))


def test_unknown_name_is_a_404_listing_known_names():
    with pytest.raises(NotFoundError) as caught:
        resolve("gpt-5-turbo")
    error = caught.value
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")
    for name in BUILTINS:
        assert name in str(error)
    body = error.to_openai()["error"]
    assert body["code"] == "model_not_found"
    assert body["type"] == "invalid_request_error"
    assert DEFAULT_MODEL in body["message"]


def test_unknown_name_suggests_a_close_match():
    with pytest.raises(NotFoundError) as caught:
        resolve("smollm2-135m-instruc")
    assert f"Did you mean {DEFAULT_MODEL!r}?" in str(caught.value)


def test_known_names_passed_in_are_listed_and_suggested():
    known = [DEFAULT_MODEL, "ft:smollm2-135m-instruct:local:orders:AbCd1234"]
    with pytest.raises(NotFoundError) as caught:
        resolve(
            "ft:smollm2-135m-instruct:local:order:AbCd1234", registry=lambda _: None, known=known
        )
    assert f"Did you mean {known[1]!r}?" in str(caught.value)


def test_registry_is_asked_for_ft_names(tmp_path):
    registered = ModelSpec(
        name="ft:m:o:s:AbCd1234", kind="fine-tuned", base=DEFAULT_MODEL, weights=DEFAULT_MODEL,
        adapter=tmp_path,
    )  # fmt: skip
    assert resolve(registered.name, registry={registered.name: registered}.get) == registered


def test_hub_ids_are_refused_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the autouse fixture
    with pytest.raises(NotFoundError) as caught:
        resolve(HUB_ID)
    assert caught.value.code == "model_not_found"


def test_hub_ids_resolve_when_a_hub_is_reachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    spec = resolve(HUB_ID)
    assert (spec.kind, spec.weights) == ("hub", HUB_ID)


def model_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_allowed_dirs_keep_folders_to_those_under_them(tmp_path):
    inside = model_folder(tmp_path / "models" / "a" / "b")
    outside = model_folder(tmp_path / "elsewhere")
    (tmp_path / "models" / "link").symlink_to(outside)
    allowed = [tmp_path / "models"]
    assert resolve(str(inside), allowed_dirs=allowed).weights == str(inside)
    assert resolve(str(inside), allowed_dirs=[inside]).weights == str(inside)  # the dir itself
    for name in (outside, tmp_path / "models" / "link", tmp_path / "models" / ".." / "elsewhere"):
        with pytest.raises(NotFoundError) as caught:
            resolve(str(name), allowed_dirs=allowed)
        assert "--model-dir" in str(caught.value)
    with pytest.raises(NotFoundError):
        resolve(str(inside), allowed_dirs=[])  # an empty list: no folder at all
    assert resolve(str(outside)).weights == str(outside)  # None: the CLI takes any folder


def test_a_refused_folder_reads_like_a_missing_one(tmp_path):
    there = model_folder(tmp_path / "there")
    messages = []
    for name in (there, tmp_path / "not-there"):
        with pytest.raises(NotFoundError) as caught:
            resolve(str(name), allowed_dirs=[tmp_path / "models"])
        messages.append(str(caught.value).replace(str(name), "NAME"))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("name", ["a\x00b", "x" * 5000, "/" + "x/" * 3000, "~no-such-user/m"])
def test_odd_names_are_unknown_not_a_crash(name):
    for allowed in (None, [Path("/tmp")]):
        with pytest.raises(NotFoundError):
            resolve(name, allowed_dirs=allowed)


def test_hub_ids_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(NotFoundError):
        resolve(HUB_ID, hub=False)


# --- listing and parameter counts -----------------------------------------------------------------


def test_a_gguf_file_is_a_model_name_under_the_folder_rules(tmp_path):
    """An export can be chatted with before it is shipped: `tunesmith chat out/model.gguf`."""
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    for folder in (allowed, other):
        folder.mkdir()
        (folder / "m.gguf").write_bytes(b"GGUF")
    spec = resolve(str(allowed / "m.gguf"))
    assert (spec.kind, spec.weights) == ("gguf", str((allowed / "m.gguf").resolve()))
    assert resolve(str(allowed / "m.gguf"), allowed_dirs=[allowed]).kind == "gguf"
    for refused in (other / "m.gguf", allowed / "missing.gguf"):
        with pytest.raises(NotFoundError):
            resolve(str(refused), allowed_dirs=[allowed])


def test_builtin_row_reads_parameters_from_the_gguf_headers(builtin_dir):
    (row,) = [r for r in builtin_rows() if r.name == DEFAULT_MODEL]
    gguf = package_folder(BUILTINS[DEFAULT_MODEL].package) / BUILTINS[DEFAULT_MODEL].gguf_file
    assert round(row.parameters / 1e5) == 1345  # 134.5 M (reference/cpu-measurements.md)
    # The GGUF headers and the converted safetensors copy agree (the tied head counted once).
    assert row.parameters == count_parameters(builtin_dir)
    assert str(gguf) in row.location
    assert row.location.split()[0].endswith(".gguf")
    assert row.default is True
    assert row.kind == "builtin"
    assert row.bytes >= gguf.stat().st_size


def test_count_parameters_matches_the_loaded_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    expected = sum(p.numel() for p in model.parameters())
    assert count_parameters(tiny_model_dir) == expected


def test_count_parameters_of_a_folder_without_weights_is_none(tmp_path):
    assert count_parameters(tmp_path) is None


def test_extra_and_trained_rows(tiny_model_dir, tmp_path):
    (row,) = extra_rows([str(tiny_model_dir), "not/a/folder"])  # offline: the hub id is dropped
    assert (row.kind, row.name) == ("local", str(tiny_model_dir.resolve()))
    assert row.parameters == count_parameters(tiny_model_dir)

    import torch
    from safetensors.torch import save_file

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    save_file({"a": torch.zeros(4, 8), "b": torch.zeros(3)}, adapter / "adapter_model.safetensors")
    specs = [
        ModelSpec("ft:m:o:s:AbCd1234", "fine-tuned", DEFAULT_MODEL, DEFAULT_MODEL, adapter=adapter),
        ModelSpec(
            "ft:m:o:s:Gone1234",
            "fine-tuned",
            DEFAULT_MODEL,
            DEFAULT_MODEL,
            adapter=Path(tmp_path / "gone"),
        ),
    ]
    present, missing = trained_rows(specs)
    assert (present.parameters, present.adapter) == (35, True)
    assert present.bytes == (adapter / "adapter_model.safetensors").stat().st_size
    assert missing.parameters is None
    assert missing.location.endswith("(missing)")
