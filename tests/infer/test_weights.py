"""How the slot cache holds and multiplies its weights (infer/weights.py): each holder gives
`F.linear`'s product within its stated rounding, and 4-bit weights are taken only where the
checkpoint's numbers are 4-bit, and only while the loaded weights are the checkpoint's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tunesmith.infer.weights import (
    Checkpoint,
    DenseWeight,
    Int4Weight,
    Int8Weight,
    four_bit,
    four_bit_values,
    packing,
    packs_fp16,
    reorders,
    room_for,
)


def q4_1(out: int, size: int, seed: int = 0) -> torch.Tensor:
    """A weight as a Q4_1 GGUF dequantises: d * q + m per group of 32, d and m fp16."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (out, size // 32, 32), generator=g).float()
    q[..., 0], q[..., 1] = 0, 15  # the quantiser's own grid spans each group
    d = (torch.rand(out, size // 32, 1, generator=g) * 0.01 + 1e-4).half().float()
    m = (torch.randn(out, size // 32, 1, generator=g) * 0.05).half().float()
    return (d * q + m).reshape(out, size)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dense_weights_multiply_through_onednns_layout_as_f_linear_does(dtype) -> None:
    """Decode steps and prefills, 3-D and 2-D: the same dot products as `F.linear`'s in another
    order, so within the rounding that reordering the sums gives in this dtype."""
    if not reorders(dtype):
        pytest.skip(f"this PyTorch build has no oneDNN {dtype} kernels")
    torch.manual_seed(0)
    w = (torch.randn(960, 576) * 0.05).to(dtype)
    weight = DenseWeight(w)
    assert weight.packed is not None and weight.half is None
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2  # bf16 rounds its output
    for shape in ((1, 1, 576), (3, 1, 576), (8, 1, 576), (17, 1, 576), (1, 64, 576), (85, 576)):
        x = torch.randn(*shape).to(dtype)
        out = weight(x)
        assert out.dtype == dtype and out.shape == (*shape[:-1], 960)
        exact = torch.nn.functional.linear(x.float(), w.float())
        torch.testing.assert_close(out.float(), exact, rtol=tolerance, atol=tolerance)


def test_without_room_for_a_reordered_copy_the_weight_is_multiplied_as_it_is() -> None:
    assert room_for(1) and not room_for(2**62)  # MemAvailable, on Linux
    w = torch.randn(64, 32)
    weight = packing(None, torch.float32, None, reorder=False)(w, ("w",))
    assert weight.packed is None and weight.full is w
    x = torch.randn(5, 1, 32)
    assert torch.equal(weight(x), torch.nn.functional.linear(x, w))


@pytest.mark.skipif(not packs_fp16(), reason="this PyTorch build has no FBGEMM fp16 GEMM")
def test_fp32_weights_multiply_a_decode_steps_rows_as_fp16_weights_with_fp32_sums() -> None:
    """Up to SMALL_ROWS rows, the product of the fp16-rounded weights, summed in fp32: inputs
    past fp16's range stay finite; more rows multiply the fp32 weights themselves."""
    torch.manual_seed(0)
    w = torch.randn(960, 576) * 0.05
    weight = DenseWeight(w, half=True)
    rounded = w.half().float()
    assert not torch.equal(rounded, w)
    for rows in (1, 2, 8, DenseWeight.SMALL_ROWS):
        x = torch.randn(rows, 1, 576)
        out = weight(x)
        assert out.dtype == torch.float32 and out.shape == (rows, 1, 960)
        torch.testing.assert_close(out, torch.nn.functional.linear(x, rounded))
        assert not torch.equal(out, torch.nn.functional.linear(x, w))  # it did take fp16
    many = torch.randn(DenseWeight.SMALL_ROWS + 1, 1, 576)  # past SMALL_ROWS: fp32 again
    torch.testing.assert_close(weight(many), torch.nn.functional.linear(many, w))
    huge = torch.full((1, 1, 576), 70_000.0)  # entries ~1e5, past fp16's range: fp32 sums
    exact = torch.nn.functional.linear(huge.double(), rounded.double()).float()
    torch.testing.assert_close(weight(huge), exact, rtol=1e-5, atol=0.5)


def test_a_weight_past_fp16s_range_gets_no_fp16_copy() -> None:
    w = torch.randn(64, 32)
    w[3, 4] = 1e6  # fp16 would saturate it to 65504
    weight = DenseWeight(w, half=True)
    assert weight.half is None
    x = torch.randn(2, 32)
    torch.testing.assert_close(weight(x), torch.nn.functional.linear(x, w))


def test_int8_weights_multiply_within_a_percent_of_the_full_ones() -> None:
    torch.manual_seed(0)
    weight, x = torch.randn(96, 64), torch.randn(5, 3, 64)
    exact = torch.nn.functional.linear(x, weight)
    packed = Int8Weight(weight)
    assert packed.q.dtype == torch.int8
    error = (packed(x) - exact).norm() / exact.norm()
    assert error < 0.01


def test_four_bit_weights_are_found_and_multiplied_as_their_numbers() -> None:
    w = q4_1(960, 576)
    values = four_bit_values(w)
    assert values is not None
    # bf16 scales: each weight within 2^-8 of its group's range of its checkpoint value
    assert (values - w).abs().max() <= w.abs().max() * 2**-7
    held = Int4Weight.exact(w, w)
    assert held is not None and held.packed.numel() * held.packed.element_size() == w.numel() // 2
    for shape in ((1, 1, 576), (8, 1, 576), (1, 32, 576)):
        x = torch.randn(*shape)
        out = held(x)
        assert out.dtype == torch.float32 and out.shape == (*shape[:-1], 960)
        # the kernel's inputs and outputs are bf16, its sums fp32
        want = torch.nn.functional.linear(x.bfloat16().float(), values)
        torch.testing.assert_close(out, want, rtol=2**-7, atol=1e-2)
    prompt = torch.randn(1, 33, 576)  # past MAX_ROWS: the dense weight's fp32 product
    torch.testing.assert_close(held(prompt), torch.nn.functional.linear(prompt, w))


@pytest.mark.parametrize(
    "weight",
    [
        torch.randn(64, 64) * 0.05,  # trained weights: up to half a step off any 4-bit grid
        q4_1(64, 64) + torch.randn(64, 64) * 1e-4,  # moved after the fact (an adapter merged)
        q4_1(64, 64)[:, :48],  # the input is no whole number of groups
    ],
    ids=["random", "nudged", "ragged"],
)
def test_weights_that_are_not_four_bit_are_left_dense(weight) -> None:
    assert four_bit_values(weight) is None
    assert Int4Weight.exact(weight, weight) is None


def checkpoint_folder(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "model.safetensors"))
    return tmp_path


def test_the_checkpoint_gives_fp32_tensors_by_name_fused_and_nothing_else(tmp_path) -> None:
    q, k = q4_1(64, 64), q4_1(32, 64, seed=1)
    folder = checkpoint_folder(tmp_path / "one", {"q": q, "k": k, "half": q.bfloat16()})
    checkpoint = Checkpoint(str(folder))
    assert torch.equal(checkpoint.get("q", "k"), torch.cat([q, k]))
    assert checkpoint.get("half") is None and checkpoint.get("q", "missing") is None
    assert Checkpoint(str(tmp_path / "nowhere")).get("q") is None  # a hub id, say
    sharded = tmp_path / "sharded"
    checkpoint_folder(sharded, {"q": q})
    (sharded / "model.safetensors").rename(sharded / "part-1.safetensors")
    index = {"weight_map": {"q": "part-1.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert torch.equal(Checkpoint(str(sharded)).get("q"), q)


def test_int4_takes_four_bit_only_while_the_loaded_weight_is_the_checkpoints(tmp_path) -> None:
    w = q4_1(64, 64)
    checkpoint = str(checkpoint_folder(tmp_path, {"w": w}))
    for dtype in (torch.float32, torch.bfloat16):
        assert not isinstance(packing(None, dtype, checkpoint)(w.to(dtype), ("w",)), Int4Weight)
        pack = packing("int4", dtype, checkpoint)
        assert isinstance(pack(w.to(dtype), ("w",)), Int4Weight)
        merged = (w + 1e-3).to(dtype)  # an adapter merged into the loaded weights
        held = pack(merged, ("w",))
        assert not isinstance(held, Int4Weight)
        assert held.full is merged
        assert not isinstance(pack(w.to(dtype), ("other",)), Int4Weight)
    assert isinstance(packing("int8", torch.float32, checkpoint)(w, ("w",)), Int8Weight)
    assert isinstance(packing("int4", torch.float32, None)(w, ("w",)), DenseWeight)
    assert packing(None, torch.bfloat16, None, cpu=False)(w, ("w",)) is w  # a GPU: as it is


def test_the_built_in_model_is_four_bit_and_a_trained_one_is_not(
    builtin_dir, tiny_model_dir
) -> None:
    assert four_bit(str(builtin_dir))
    assert not four_bit(str(tiny_model_dir))
