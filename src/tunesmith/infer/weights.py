"""How the slot cache's projection and head weights are held, and multiplied, on a CPU.

A decode step multiplies one new token per row by every weight, so it is bound by reading the
weights and by how well a kernel runs at a few rows; the right kernel depends on the dtype and
the rows at hand. Each holder here is called like `F.linear(x, weight)`:
- `DenseWeight` on a CPU: reordered once into oneDNN's blocked layout, which runs a few rows
  2-2.5x faster than `F.linear` in bf16 and 1.3-2x in fp32; serving in fp32 (a CPU without bf16
  units), an fp16 copy for FBGEMM's fp16 GEMM at up to 48 rows (fp32 sums, 1.5-2.4x faster);
- a plain tensor on a GPU (`linear`);
- opt-in (`--quantize`), each changing the answers a little: `Int4Weight` where the
  checkpoint's weights are 4-bit numbers in groups of 32, as a model dequantised from a
  Q4_0/Q4_1 GGUF has (the built-in model): PyTorch's int4 kernel reads an eighth of fp32's
  bytes, the numbers are the checkpoint's own but the scales and inputs bf16; `Int8Weight`,
  weight-only int8 per output channel, for any model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

FP32 = torch.float32


class Int8Weight:
    """A weight stored as int8 per output channel (scale = the row's largest magnitude / 127),
    multiplied by PyTorch's CPU kernel for weight-only int8 (`_weight_int8pack_mm`). A decode
    step reads every weight once and is bound by those bytes: int8 reads half of bf16's and a
    quarter of fp32's. Opt-in (`tunesmith serve --quantize int8`): it changes the answers a
    little (exact match by up to 3 points on compare's demo task: `decode_quality.py --int8`)."""

    def __init__(self, weight: torch.Tensor) -> None:
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127
        self.q = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
        self.scale = scale.to(weight.dtype)
        self.shape = weight.shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The product."""
        flat = x.reshape(-1, x.shape[-1]).contiguous()
        out = torch.ops.aten._weight_int8pack_mm(flat, self.q, self.scale.to(x.dtype))
        return out.reshape(*x.shape[:-1], self.shape[0])


class DenseWeight:
    """A dense fp32 or bf16 weight on a CPU, reordered once into oneDNN's blocked layout for the
    rows of a decode step and multiplied there (`mkldnn._linear_pointwise`: what inductor's
    freezing does with a constant weight); when serving in fp32, an fp16 copy for one or two rows.

    Measured on 30 layers of the built-in model's weights, 2 threads. With AVX512-BF16, gate/up
    (3072 x 576) in bf16, ms at 1 / 8 / 16 / 85 rows: reordered 2.0 / 2.7 / 3.6 / 11.9, `F.linear`
    5.2 / 6.2 / 7.6 / 16.7, ATen's GEMV (oneDNN off) 2.6 at one row; the head 0.8 / 1.2 / 1.9 / 6.0
    against 2.5 / 3.1 / 4.0 / 8.7. With PyTorch's kernels capped at AVX2 (that CPU kind serves
    fp32), half of gate/up (1536 x 576): reordered 2.7 / 4.8 / 6.8 / 21.8, `F.linear` (MKL, one
    core at these shapes) 7.5 / 10.6 / 12.1 / 28.4, a `bmm` over two slices of the output (one
    per core, what this class did before) 3.6 / 6.2 / 8.4 / 27.1; the head at 8 rows 4.0 against
    7.8. Each output is the same fp32 dot product in another order: an answer can differ from
    `generate`'s at a near tie.

    Serving in fp32 (a CPU without bf16 units), up to SMALL_ROWS rows multiply an fp16 copy
    packed for FBGEMM's fp16 GEMM (`linear_dynamic_fp16`): half of fp32's bytes, fp32 inputs and
    fp32 sums, so no product can pass fp16's range; only the weights are rounded, to fp16's 10
    bits of mantissa (llama.cpp's f16; bf16 would keep 7). All five projections of 30 layers and
    the head, PyTorch's kernels capped at AVX2, ms at 1 / 2 / 4 / 8 / 16 / 48 / 64 rows: reordered
    fp32 10.7 / 21.0 (with ATen's fp16 GEMV, the copy this replaced: it reread the weights per
    row) / 24.0 / 25.8 / 35.9 / 90.5 / 91.3, FBGEMM fp16 9.8 / 9.7 / 10.1 / 17.6 / 29.2 / 78.1 /
    93.2; past that the reordered fp32 weights are faster (the head at 64 rows: 18.6 against
    28.0). A weight past fp16's range (65504) gets no copy.

    The reordered copy is a second copy of the weights (the model's own still back its
    parameters, which attaching adapters and the general decode path read): +259 MB for the
    built-in model in bf16, +518 MB in fp32 (and the fp16 copy +259 MB). `packing` makes the
    copies only where memory has room (`room_for`); else `reorder=False` multiplies the model's
    own weights by `F.linear`."""

    SMALL_ROWS = 48
    ROWS_HINT = 8  # the rows oneDNN picks its layout for; any number of rows multiplies

    def __init__(self, weight: torch.Tensor, half: bool = False, reorder: bool = True) -> None:
        """`half`: keep an fp16 copy for few rows (serving an fp32 model, where this PyTorch
        build packs for FBGEMM); `reorder`: make the reordered copy (where this build can)."""
        self.full = weight
        self.shape = weight.shape
        fits = half and packs_fp16() and bool(weight.abs().amax() <= torch.finfo(torch.half).max)
        self.half = (
            torch.ops.quantized.linear_prepack_fp16(weight.detach().float().contiguous(), None)
            if fits
            else None
        )
        self.packed = (
            torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), self.ROWS_HINT)
            if reorder and reorders(weight.dtype)
            else None
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The product."""
        flat = x.reshape(-1, self.shape[1])
        if self.half is not None and flat.shape[0] <= self.SMALL_ROWS:
            out = torch.ops.quantized.linear_dynamic_fp16(flat.contiguous(), self.half)
        elif self.packed is not None:
            out = torch.ops.mkldnn._linear_pointwise(flat, self.packed, None, "none", [], "")
        else:
            out = F.linear(flat, self.full)
        return out.reshape(*x.shape[:-1], self.shape[0])


@lru_cache(maxsize=1)
def packs_fp16() -> bool:
    """Whether this PyTorch build multiplies weights packed for FBGEMM's fp16 GEMM (x86 builds,
    on a CPU with at least AVX2)."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return False
    try:
        x, w = torch.ones(1, 8), torch.ones(8, 8)
        packed = torch.ops.quantized.linear_prepack_fp16(w, None)
        return torch.equal(torch.ops.quantized.linear_dynamic_fp16(x, packed), F.linear(x, w))
    except RuntimeError:
        return False


def reorders(dtype: torch.dtype) -> bool:
    """Whether this CPU build multiplies `dtype` weights through oneDNN's reordered layout."""
    return (
        dtype in (FP32, torch.bfloat16)
        and torch.backends.mkldnn.is_available()
        and (dtype == FP32 or torch.ops.mkldnn._is_mkldnn_bf16_supported())
    )


class Int4Weight:
    """A weight that is `d * q + m` in each group of 32 along its input, q in 0..15: the form
    Q4_1 (and, with m = -8d, Q4_0) dequantises to. The built-in model is such a GGUF, so its
    weights are 4-bit numbers; held as 4-bit, they take an eighth of fp32's bytes and are
    multiplied by PyTorch's CPU kernel for them (`_weight_int4pack_mm_for_cpu`). Measured on 30
    layers of the built-in model's gate/up weights, ms at 1 / 8 / 16 rows: fp32 13 / 14 / 18, the
    reordered fp32 weights (`DenseWeight`) 6.9 / 8.9 / 13.2, int4 3 / 6 / 12 with PyTorch's
    kernels capped at AVX2; bf16 5.6 / 6.3 / 7.4 (reordered 2.0 / 2.7 / 3.6) against int4 1.0 /
    3.0 / 5.5 with AVX512-BF16. Served end to end it is no faster than the reordered weights at 8
    and more rows in flight (README "Performance").

    Not free of rounding: the kernel is fast only with bf16 inputs (fp32 or fp16 ran 10-50x
    slower) and takes bf16 scales. So a CPU without bf16 units multiplies these weights as one
    with them does (bf16 inputs, fp32 sums), and each group's d and m + 8d are rounded to bf16:
    measured on the built-in model, a weight moves by 0.17% of its size on average, bf16's own
    rounding 0.11%. Past MAX_ROWS (a prompt's prefill) the dense weight is as fast or faster."""

    GROUP = 32
    MAX_ROWS = 32

    def __init__(self, packed: torch.Tensor, scales: torch.Tensor, dense: DenseWeight) -> None:
        self.packed = packed
        self.scales = scales  # [in / 32, out, 2]: each group's scale and zero
        self.dense = dense
        self.shape = dense.shape

    @classmethod
    def exact(
        cls, source: torch.Tensor, weight: torch.Tensor, reorder: bool = True
    ) -> Int4Weight | None:
        """`source`: the weight as the checkpoint holds it, in fp32; `weight`: as loaded, for the
        prefills (`DenseWeight`, no fp16 copy, made only once `source` is found 4-bit); None
        unless it is 4-bit."""
        grid = _four_bit_grid(source)
        if grid is None:
            return None
        q, scales = grid
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        return cls(packed, scales, DenseWeight(weight, reorder=reorder))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The product."""
        flat = x.reshape(-1, x.shape[-1])
        if flat.shape[0] > self.MAX_ROWS:
            return self.dense(x)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(
            flat.to(torch.bfloat16), self.packed, self.GROUP, self.scales
        )
        return out.to(x.dtype).reshape(*x.shape[:-1], self.shape[0])


Weight = torch.Tensor | Int8Weight | DenseWeight | Int4Weight


def _four_bit_grid(source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A weight's 4-bit numbers [out, in] and its groups' scales and zeros [in / 32, out, 2] in
    the int4 kernel's form, w = (q - 8) * scale + zero; None unless every group is 4-bit:
    rounding to the grid may move a value by no more than fp32's own rounding of `d * q + m`,
    a thousandth of a step here (a weight that is not 4-bit moves by up to half a step, a
    quarter on average)."""
    group = Int4Weight.GROUP
    out, size = source.shape
    if size % group or out % 2:
        return None
    groups = source.reshape(out, size // group, group)
    low = groups.amin(dim=-1, keepdim=True)
    step = (groups.amax(dim=-1, keepdim=True) - low) / 15
    q = ((groups - low) / step.clamp(min=torch.finfo(FP32).tiny)).round().clamp(0, 15)
    if not bool(((q * step + low - groups).abs() <= step * 1e-3).all()):
        return None
    scales = torch.cat([step, low + 8 * step], dim=-1).transpose(0, 1)
    return q.reshape(out, size).to(torch.int32), scales.to(torch.bfloat16).contiguous()


def four_bit_values(source: torch.Tensor) -> torch.Tensor | None:
    """The weight an `Int4Weight` multiplies by, in fp32 (its scales are bf16), or None."""
    grid = _four_bit_grid(source)
    if grid is None:
        return None
    q, scales = grid
    scale, zero = scales.float().transpose(0, 1).repeat_interleave(Int4Weight.GROUP, 1).unbind(-1)
    return (q - 8) * scale + zero


def linear(x: torch.Tensor, weight: Weight) -> torch.Tensor:
    """`F.linear(x, weight)` for a plain weight (on a GPU), else the holder's own product."""
    return F.linear(x, weight) if isinstance(weight, torch.Tensor) else weight(x)


class Checkpoint:
    """The fp32 tensors of a safetensors checkpoint folder, read one at a time by name (a
    sharded one through its index); empty for anything else (a hub id, a bf16 file)."""

    def __init__(self, folder: str) -> None:
        from safetensors import safe_open

        self._open = safe_open
        self._files: dict[str, Path] = {}
        root = Path(folder)
        index = root / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            self._files = {name: root / file for name, file in weight_map.items()}
        elif (root / "model.safetensors").is_file():
            with safe_open(root / "model.safetensors", "pt") as f:
                self._files = dict.fromkeys(f.keys(), root / "model.safetensors")

    def get(self, *names: str) -> torch.Tensor | None:
        """The named tensors stacked along their first dimension (a fused weight), or None."""
        parts = []
        for name in names:
            if name not in self._files:
                return None
            with self._open(self._files[name], "pt") as f:
                if f.get_slice(name).get_dtype() != "F32":
                    return None
                parts.append(f.get_tensor(name))
        return torch.cat(parts)


def packing(
    quantize: str | None,
    dtype: torch.dtype,
    folder: str | None,
    cpu: bool = True,
    reorder: bool = True,
) -> Callable[[torch.Tensor, tuple[str, ...]], Weight]:
    """How a weight is held, given its names in the checkpoint: as int8 with `int8`; as 4-bit
    with `int4` where the checkpoint in `folder` (None: none to read) holds 4-bit numbers; else
    dense: on a CPU reordered for oneDNN, with an fp16 copy for few rows when serving in fp32
    (neither where `reorder` is False: no memory for them); elsewhere (a GPU) as it is. Only
    `int4` reads the checkpoint."""
    if quantize == "int8":
        return lambda weight, names: Int8Weight(weight)
    if not cpu:
        return lambda weight, names: weight

    def dense(weight: torch.Tensor) -> DenseWeight:
        return DenseWeight(weight, half=dtype == FP32 and reorder, reorder=reorder)

    if quantize != "int4" or folder is None:
        return lambda weight, names: dense(weight)
    checkpoint = Checkpoint(folder)

    def pack(weight: torch.Tensor, names: tuple[str, ...]) -> Weight:
        source = checkpoint.get(*names)
        # the loaded weight must be the checkpoint's (a merged adapter changed it): else dense
        if source is None or not torch.equal(source.to(weight.dtype), weight):
            return dense(weight)
        return Int4Weight.exact(source, weight, reorder) or dense(weight)

    return pack


def room_for(nbytes: int) -> bool:
    """Whether a copy of `nbytes` leaves at least as much memory available again (Linux's
    MemAvailable; elsewhere, yes): a model as large as half the free memory is served from its
    own weights rather than pushed into swap by a faster layout."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 >= 2 * nbytes
    except OSError:
        pass
    return True


@lru_cache(maxsize=16)
def four_bit(folder: str) -> bool:
    """Whether `--quantize int4` holds this checkpoint's weights as 4-bit (its first layer's
    q_proj read as the sample). Then an adapter is better served beside them than merged into
    a dense copy: merged, the weights are no longer 4-bit, and `compare` would time the
    fine-tuned model on slower weights than the prompting strategies."""
    source = Checkpoint(folder).get("model.layers.0.self_attn.q_proj.weight")
    return source is not None and _four_bit_grid(source) is not None
