"""The built-in model: converted from its GGUF once, then loaded from the safetensors cache."""

from __future__ import annotations

import time

import pytest
import torch

from tunesmith.errors import TunesmithError
from tunesmith.models import loading
from tunesmith.models.catalog import DEFAULT_MODEL, resolve
from tunesmith.models.spec import ModelSpec


@pytest.mark.slow
def test_second_load_reads_the_cache_not_the_gguf(builtin_dir, monkeypatch):
    # The session fixture converted it once; from now on the GGUF must not even be looked up.
    assert (builtin_dir / "model.safetensors").exists()

    def no_gguf(package):
        raise AssertionError("the GGUF was read again")

    monkeypatch.setattr(loading, "package_folder", no_gguf)
    started = time.monotonic()
    model = loading.load_model(resolve(DEFAULT_MODEL), dtype=torch.float32, device="cpu")
    seconds = time.monotonic() - started
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    # The cached copy is plain weights: no GGUF quantizer flag that would freeze the Trainer.
    assert getattr(model, "hf_quantizer", None) is None
    assert not hasattr(model.config, "quantization_config")
    print(f"second load of the built-in model: {seconds:.2f} s")


def test_cached_copy_keeps_the_real_chat_template(tokenizer):
    assert "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.eos_token == "<|im_end|>"


@pytest.mark.parametrize(
    "config",
    [
        '{"model_type": "no-such-architecture"}',  # ValueError from transformers
        '{"model_type": "llama", "hidden_size": "wide"}',  # a strict-dataclass TypeError
        "{}",  # no model_type: ValueError
        "[]",  # not a mapping: TypeError
        "{not json",  # OSError
    ],
)
def test_a_model_that_cannot_load_is_a_400_naming_it(tmp_path, config):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    spec = resolve(str(folder))
    for load in (
        lambda: loading.load_model(spec, device="cpu"),
        lambda: loading.load_tokenizer(spec),
    ):
        with pytest.raises(TunesmithError) as caught:
            load()
        error = caught.value
        assert (error.status, error.code, error.param) == (400, "model_not_loadable", "model")
        assert repr(spec.name) in error.message and len(error.message) < 1000


def test_a_broken_adapter_is_a_400_too(tiny_model_dir, tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "NOT_A_METHOD"}')
    spec = ModelSpec(
        "ft:tiny:local:x:Broken12", "fine-tuned", str(tiny_model_dir), str(tiny_model_dir),
        adapter=tmp_path,
    )  # fmt: skip
    with pytest.raises(TunesmithError) as caught:
        loading.load_model(spec, device="cpu")
    assert caught.value.code == "model_not_loadable" and "adapter" in caught.value.message


def test_our_own_bugs_are_not_hidden(tiny_model_dir, monkeypatch):
    """Only the library calls are wrapped: a bug in our code around them still raises as one."""
    monkeypatch.setattr(loading, "weights_folder", lambda spec: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        loading.load_model(resolve(str(tiny_model_dir)), device="cpu")


def test_a_gguf_export_loads_back_as_a_model(tiny_model_dir, tmp_path):
    """`tunesmith chat out/model.gguf`: the file is dequantised once into the cache and then
    loads like a folder, answering as the source model does (f16 rounding aside)."""
    import torch

    from tunesmith.export.gguf import write_gguf
    from tunesmith.models.catalog import resolve
    from tunesmith.models.listing import extra_rows
    from tunesmith.models.loading import (
        count_parameters,
        load_model,
        load_tokenizer,
        weights_folder,
    )

    gguf = write_gguf(tiny_model_dir, tmp_path / "model.gguf", "f16").path
    spec = resolve(str(gguf))
    assert spec.kind == "gguf"
    model = load_model(spec, dtype=torch.float32, device="cpu")
    source = load_model(resolve(str(tiny_model_dir)), dtype=torch.float32, device="cpu")
    assert (
        load_tokenizer(spec).chat_template
        == load_tokenizer(resolve(str(tiny_model_dir))).chat_template
    )
    ids = torch.tensor([[1, 42, 420, 4200]])
    with torch.no_grad():
        got, want = model(ids).logits, source(ids).logits
    assert torch.allclose(got, want, atol=2e-2), (got - want).abs().max()
    assert weights_folder(spec) == weights_folder(resolve(str(gguf)))  # converted once
    (row,) = extra_rows([str(gguf)])
    assert (row.kind, row.parameters) == ("gguf", count_parameters(tiny_model_dir))


def test_gguf_parameters_match_ggufs_own_reader_on_the_built_in():
    """Counted from the tensor headers with the metadata skipped, as gguf's reader counts them."""
    import math

    from gguf import GGUFReader

    from tunesmith.models.catalog import BUILTINS

    builtin = BUILTINS[DEFAULT_MODEL]
    path = loading.package_folder(builtin.package) / builtin.gguf_file
    want = sum(math.prod(int(d) for d in t.shape) for t in GGUFReader(str(path)).tensors)
    assert loading.gguf_parameters(path) == want > 100_000_000
