"""The running batch for Llama-family models: a slot KV cache and a decode step in plain torch.

Why not the model's own forward (`batch.RunningBatch`)? On a CPU a decode step is a few hundred
MFLOP, milliseconds of arithmetic, and transformers' forward spends most of a step in Python
around it: the 4-D mask rebuilt each step, the cache concatenated per layer, PEFT's per-layer
adapter dispatch. Here:
- the KV cache is preallocated, one slot per row, `[layers, slots, kv heads, length, head]`; a
  request joining is prefilled into a free slot and the running rows are never re-padded; a
  finished row's slot is refilled by moving the last row into it, so rows stay `0..B-1`;
- newcomers are prefilled together, in the same forward as the running rows' next decode step
  (the projections read each weight once for all of them; the running rows do not wait);
- q/k/v and gate/up are one matmul each (the model's own weights become views into the fused
  tensors: no second copy);
- LoRA adapters are applied as two batched matmuls per fused projection over the adapters in
  use, each adapter's rows one matrix (Punica's SGMV; the rows grouped once when the batch's
  rows change, not at every step): a batch mixing adapters costs about what one adapter costs.
- a decode step's kernels are picked for one new token per row: attention as three fp32
  matmuls (`_decode_attention`), and the projections as `weights.py` holds them: on a CPU
  reordered once for oneDNN; serving in fp32, an fp16 copy for FBGEMM at a decode step's rows;
  opt-in int8, or int4 for a 4-bit checkpoint.
Otherwise the arithmetic is transformers' own (RMSNorm in fp32, rotary embeddings from the
model's `rotary_emb`); the sums of those kernels run in another order than `generate`'s, so
greedy tokens equal its tokens but where its two likeliest were all but tied, and a request may
part from its batched answer there too. `tests/infer/test_slots.py` checks both.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from itertools import groupby

import torch
import torch.nn.functional as F

from tunesmith.infer.batch import RunningBatch
from tunesmith.infer.generation import Generation
from tunesmith.infer.weights import Weight, linear, packing, room_for

log = logging.getLogger(__name__)
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The projections that share an input, as the fused weights and the LoRA groups hold them.
GROUPS = {
    "qkv": ("q_proj", "k_proj", "v_proj"),
    "o": ("o_proj",),
    "gate_up": ("gate_proj", "up_proj"),
    "down": ("down_proj",),
}
FP32 = torch.float32
FIRST_LENGTH = 256  # cache length per slot at first; doubled when a row outgrows it


def base_of(model):
    """The transformers model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supported(model) -> bool:
    """Llama-architecture decoders without biases, tensor-parallel splits or sliding windows."""
    config = base_of(model).config
    return (
        config.model_type == "llama"
        and not getattr(config, "attention_bias", False)
        and not getattr(config, "mlp_bias", False)
        and getattr(config, "pretraining_tp", 1) == 1
        and config.hidden_act == "silu"
    )


def adapters_supported(model) -> bool:
    """Plain LoRA on the seven projections only (no DoRA, no trained embeddings or head).

    Read from the LoRA layers the model has, not from `target_modules`: PEFT saves a small
    model's "all-linear" as full paths (`model.layers.0.self_attn.q_proj`), and a user may give
    a regex; each would have sent its adapter to the general path."""
    from peft.tuners.lora import LoraLayer

    for config in getattr(model, "peft_config", {}).values():
        if (
            getattr(config, "peft_type", None) != "LORA"
            or getattr(config, "use_dora", False)
            or getattr(config, "modules_to_save", None)
        ):
            return False
    return all(
        name.rsplit(".", 1)[-1] in PROJECTIONS
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    )


def _weight(module) -> torch.Tensor:
    return getattr(module, "base_layer", module).weight


def _fuse(modules: list) -> torch.Tensor:
    """One weight for several linear layers on the same input; each layer's own weight becomes a
    view into it, so the model keeps working and no memory is spent twice."""
    weights = [_weight(m) for m in modules]
    fused = torch.cat([w.data for w in weights])
    start = 0
    for w in weights:
        w.data = fused[start : start + w.shape[0]]
        start += w.shape[0]
    return fused


def _names(layer: int, *projections: str) -> tuple[str, ...]:
    """The checkpoint's names of a Llama layer's projection weights."""
    return tuple(
        f"model.layers.{layer}.{'self_attn' if p[0] in 'qkvo' else 'mlp'}.{p}.weight"
        for p in projections
    )


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm (the variance in fp32, the weight applied after the cast back) in one fused
    kernel instead of six: bit-identical to its op-by-op form, checked in tests/infer."""
    return weight * F.rms_norm(x.to(FP32), (x.shape[-1],), eps=eps).to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _decode_attention(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """Attention for one new token per row, as three batched ops in fp32: q [rows, heads, 1, d]
    against the cache's keys and values [rows, kv heads, length, d]; each kv head's query heads
    are the rows of one matmul (the layout of transformers' `repeat_kv`). SDPA's CPU kernel is
    built for long queries: for one query it took 126 us a layer in bf16 for one row and 1.1 ms
    for 8 rows here, this 48 us and 0.37 ms, a third of an 8-row step. Its sums are fp32 as the
    kernel's are, in another order: an answer can differ from `generate`'s at a near tie."""
    rows, heads, _, dim = q.shape
    kv = keys.shape[1]
    grouped = q.reshape(rows, kv, heads // kv, dim).to(FP32)
    scores = torch.matmul(grouped, keys.to(FP32).transpose(-1, -2)) * scale
    if mask is not None:  # [rows, 1, 1, length]: broadcast over the kv heads and their queries
        scores = scores.masked_fill(~mask, float("-inf"))
    out = torch.matmul(torch.softmax(scores, dim=-1), values.to(FP32))
    return out.reshape(rows, heads, 1, dim).to(q.dtype)


@dataclass
class Layer:
    qkv: Weight
    o: Weight
    gate_up: Weight
    down: Weight
    attn_norm: torch.Tensor
    mlp_norm: torch.Tensor
    modules: dict  # projection name -> module (its LoRA weights, when an adapter is attached)


@dataclass(frozen=True)
class Bundle:
    """Projections of a group, next to each other, whose B matrices have one shape (k and v,
    gate and up): their B products are one `bmm` with `count` matrices per adapter."""

    start: int  # the first rank column of their A product within the group's
    count: int
    rank: int  # each projection's rank, the largest any adapter gives it (0: no adapter does)
    out: int  # each projection's outputs

    def apply(self, xa: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The bundle's update [adapters, rows, count * out] from the group's A product `xa`
        [adapters, rows, ranks] and its tables `b` [adapters, count, rank, out]."""
        g, m, _ = xa.shape
        if self.rank == 0:
            return xa.new_zeros(g, m, self.count * self.out)
        part = xa[..., self.start : self.start + self.count * self.rank]
        if self.count == 1:
            return torch.bmm(part, b.view(g, self.rank, self.out))
        part = part.reshape(g, m, self.count, self.rank).transpose(1, 2)
        delta = torch.bmm(
            part.reshape(g * self.count, m, self.rank), b.view(-1, self.rank, self.out)
        )
        return delta.view(g, self.count, m, self.out).transpose(1, 2).reshape(g, m, -1)


# one projection group's adapter tables: A [adapters, in, ranks], and each bundle with its B
GroupTables = tuple[torch.Tensor, list[tuple[Bundle, torch.Tensor]]]


class AdapterBank:
    """Every adapter in use, per layer and projection group: `a` [adapters + 1, in, ranks], each
    projection's A at a fixed place along the ranks (its rank is the largest any adapter gives it,
    smaller ones zero-padded), and per bundle of projections (`Bundle`) `b` [adapters + 1, count,
    rank, out], with the adapter's scaling folded in; index 0 is "no adapter" (zeros).

    Groups share an input, like the fused weights: qkv, o, gate_up, down. A group's B matrices
    are kept per projection, not as one block-diagonal matrix: a third of that matrix's bytes were
    zeros (q/k/v and gate/up), read at every step.

    In fp32 whatever the base's dtype, as PEFT keeps adapters (`autocast_adapter_dtype`) and
    computes them; at these sizes it is also faster: a bf16 `bmm` of 8 rows at rank 16 took
    ~3x the fp32 one here (oneDNN's fixed cost per call), 240 of them a step.
    """

    def __init__(self, layers: list[Layer], names: list[str]) -> None:
        self.names = names
        self.index = {None: 0, **{name: i + 1 for i, name in enumerate(names)}}
        self.per_layer: list[dict[str, GroupTables]] = [
            {group: self._tables(layer, projections) for group, projections in GROUPS.items()}
            for layer in layers
        ]

    def _tables(self, layer: Layer, projections: tuple[str, ...]) -> GroupTables:
        """One group's A [adapters + 1, in, ranks] and its bundles with their B tables."""
        adapters = len(self.names) + 1
        # per projection, per adapter: (A [rank, in], B [out, rank] scaled) or None
        loras = [[_lora(layer.modules[p], name) for name in self.names] for p in projections]
        ranks = [max((lora[0].shape[0] for lora in per if lora), default=0) for per in loras]
        weight = _weight(layer.modules[projections[0]])
        a_all = weight.new_zeros((adapters, weight.shape[1], sum(ranks)), dtype=FP32)
        tables, start = [], 0
        for projection, per, rank in zip(projections, loras, ranks, strict=True):
            outs = _weight(layer.modules[projection]).shape[0]
            b = weight.new_zeros((adapters, rank, outs), dtype=FP32)
            for i, lora in enumerate(per, start=1):
                if lora is not None:
                    a_all[i, :, start : start + lora[0].shape[0]] = lora[0].T
                    b[i, : lora[1].shape[1]] = lora[1].T
            tables.append((start, rank, b))
            start += rank
        # next projections with B of one shape share a `bmm` (their B stacked: [.., count, ..])
        bundles = []
        for (rank, outs), run in groupby(tables, key=lambda t: (t[1], t[2].shape[2])):
            starts, _, bs = zip(*run, strict=True)
            bundles.append((Bundle(starts[0], len(bs), rank, outs), torch.stack(bs, dim=1)))
        return a_all, bundles


def _lora(module, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Adapter `name`'s A [rank, in] and B [out, rank] times its scaling on this projection, in
    fp32; None where it leaves the projection alone."""
    if name not in getattr(module, "lora_A", {}):
        return None
    b = module.lora_B[name].weight * module.scaling[name]
    return module.lora_A[name].weight.to(FP32), b.to(FP32)


class Lora:
    """The rows' adapters for the steps to come, as segmented matmuls (Punica's SGMV): the rows
    grouped by adapter when the batch's rows change, then per projection group `delta = (h @ A)
    @ B` as batched matmuls over the adapters in use (one for A, one per `Bundle` for B), each
    group's rows one matrix, padded to the largest group with a zero row. Rows without an
    adapter take no part. As in PEFT, the input is cast up to the adapter's fp32 and the sum
    cast back to the base's dtype.

    Each adapter's A and B are read once a step, not once per row: a copy per row (BGMV, which
    this replaced) read 232 MB a step at 8 rows with rank 16. A decode step of 8 rows (bf16
    kind, two alternating runs) went from 31.1 / 27.7 ms to 27.0 / 23.6 on one adapter and from
    26.6 / 28.7 to 24.5 / 25.1 on four (~20 without an adapter). The rows are reordered only
    where the adapters are not one for all (`in_order`), by two gathers (rows in, deltas out);
    a scatter-add of the deltas (`index_add`) instead cost as much as the smaller matmuls
    saved. B kept per projection rather than block-diagonal (78 MB a step for four adapters at
    rank 16 in place of 116): four mixed against one adapter 1.22x -> 1.13-1.14x in time per
    token serving fp32 (emulated AVX2), 1.11x -> 1.01x in bf16 (`bench/multi_lora.py`)."""

    def __init__(self, bank: AdapterBank | None, adapters: list[str | None]) -> None:
        self.active = bank is not None and any(a is not None for a in adapters)
        self.per_layer: list[dict[str, GroupTables]] = []
        if bank is None or not self.active:
            return
        rows: dict[int, list[int]] = {}  # bank index -> its rows
        for row, name in enumerate(adapters):
            if name is not None:
                rows.setdefault(bank.index[name], []).append(row)
        used = sorted(rows)
        n, size = len(adapters), max(len(r) for r in rows.values())
        # each adapter's rows, padded with rows of zeros (index n) to the largest group
        flat = [row for i in used for row in rows[i] + [n] * (size - len(rows[i]))]
        # each row's place among the deltas; a row without an adapter takes a zero delta
        # appended after them
        place = {row: i for i, row in enumerate(flat) if row < n}
        self.in_order = flat == list(range(n))  # one adapter on every row: no reordering
        self.gather = torch.tensor(flat)
        self.scatter = torch.tensor([place.get(row, len(flat)) for row in range(n)])
        self.pad = len(place) < len(flat)  # some groups padded with the zero row
        self.append_zero = len(place) < n  # some rows without an adapter
        # the adapters' tables: a view of the bank where they are its neighbours (one adapter
        # always is), else a copy. A copy of four adapters' tables is 78 MB at rank 16, made at
        # every change of the batch's rows (each admit and each finish): ~5% of a mixed run.
        neighbours = used == list(range(used[0], used[0] + len(used)))
        pick = slice(used[0], used[-1] + 1) if neighbours else torch.tensor(used)
        # a group no adapter touches (rank 0: the MLP under PEFT's default q/v targets) is left
        # out, so its projection is not added a zero update at every step
        for tables in bank.per_layer:
            self.per_layer.append(
                {
                    group: (a[pick], [(bundle, b[pick]) for bundle, b in bundles])
                    for group, (a, bundles) in tables.items()
                    if a.shape[2]
                }
            )

    def add(self, layer: int, group: str, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """`out` [rows, tokens, out], the projection of `h` [rows, tokens, in] by the base
        weights, plus each row's adapter update."""
        tables = self.per_layer[layer].get(group) if self.active else None
        if tables is None:
            return out
        a, bundles = tables
        _, tokens, size = h.shape
        x = h.to(FP32)
        if not self.in_order:
            if self.pad:
                x = torch.cat([x, x.new_zeros(1, tokens, size)])
            x = x.index_select(0, self.gather)
        xa = torch.bmm(x.reshape(a.shape[0], -1, size), a)
        pieces = [bundle.apply(xa, b) for bundle, b in bundles]
        delta = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
        delta = delta.view(-1, tokens, delta.shape[-1])
        if not self.in_order:
            if self.append_zero:
                delta = torch.cat([delta, delta.new_zeros(1, tokens, delta.shape[2])])
            delta = delta.index_select(0, self.scatter)
        return (out + delta).to(out.dtype)


NO_ADAPTERS = Lora(None, [])  # rows without adapters: `add` leaves the projection as it is


@dataclass
class Part:
    """Rows of one forward that share a shape: the running rows' next tokens (one each), or a
    newcomer's prompt (one row), and the slots they occupy."""

    ids: torch.Tensor  # [rows, tokens]
    positions: torch.Tensor  # [rows, tokens]
    rows: slice
    lora: Lora


@dataclass
class AttentionView:
    """A part's rotary embeddings and mask, the same in every layer of a forward."""

    cos: torch.Tensor
    sin: torch.Tensor
    start: int  # the first new position (of a prefill)
    end: int  # one past the last position attended to
    mask: torch.Tensor | None
    causal: bool
    slot_ids: torch.Tensor


class PrefixCache:
    """Keys and values of prompt blocks seen before, so a prefix many requests share (a system
    prompt, the few-shot examples `compare` sends with every question) is computed once.

    A prompt is cut into blocks of BLOCK tokens; block i's entry is keyed by a hash chained over
    the adapter and every block up to i (vLLM's automatic prefix caching), so equal keys mean
    equal prefixes. A hit copies the blocks into the newcomer's slot and only the rest of its
    prompt is prefilled. Least recently used blocks go first past `max_bytes`; a lookup stops at
    the first missing block.
    """

    BLOCK = 16  # vLLM's size: a shared prefix is reused to within 15 tokens of its end

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        # chain hash -> (the block's tokens, keys [layers, kv, BLOCK, head], values)
        self.blocks: OrderedDict[int, tuple[tuple[int, ...], torch.Tensor, torch.Tensor]] = (
            OrderedDict()
        )
        self.hits = 0  # prompt tokens not recomputed, for the benchmark and the tests

    def _chain(self, adapter: str | None, ids: list[int]) -> list[tuple[int, tuple[int, ...]]]:
        out, h = [], hash(("prefix", adapter))
        for start in range(0, len(ids) - self.BLOCK + 1, self.BLOCK):
            block = tuple(ids[start : start + self.BLOCK])
            h = hash((h, block))
            out.append((h, block))
        return out

    def match(self, adapter: str | None, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cached blocks that start `ids`, leaving at least one token to prefill (its
        logits give the first answer token)."""
        found = []
        for h, block in self._chain(adapter, ids[:-1]):
            entry = self.blocks.get(h)
            if entry is None or entry[0] != block:  # missing (or a hash collision)
                break
            self.blocks.move_to_end(h)
            found.append((entry[1], entry[2]))
        return found

    def missing(self, adapter: str | None, ids: list[int]) -> set[int]:
        """The keys of the full blocks of `ids` not in the cache: what prefilling it computes."""
        return {h for h, _ in self._chain(adapter, ids) if h not in self.blocks}

    def store(self, adapter: str | None, ids: list[int], keys, values) -> None:
        """Remember the full blocks of a prompt just prefilled (`keys`/`values`: its slot)."""
        for index, (h, block) in enumerate(self._chain(adapter, ids)):
            if h in self.blocks:
                self.blocks.move_to_end(h)
                continue
            span = slice(index * self.BLOCK, (index + 1) * self.BLOCK)
            k, v = keys[:, :, span].clone(), values[:, :, span].clone()
            self.blocks[h] = (block, k, v)
            self.bytes += 2 * k.numel() * k.element_size()
        while self.bytes > self.max_bytes and self.blocks:
            _, (_, k, _) = self.blocks.popitem(last=False)
            self.bytes -= 2 * k.numel() * k.element_size()


class SlotBatch(RunningBatch):
    """`RunningBatch`'s contract (admit, step, drop_finished, fail_all) on the slot cache."""

    def __init__(
        self,
        model,
        device: str,
        pad_id: int,
        prefix_cache_bytes: int = 256 * 1024**2,
        quantize: str | None = None,
    ) -> None:
        """`quantize`: None, "int8" (weight-only int8 projections and head) or "int4" (a 4-bit
        checkpoint's projections as 4-bit), on a CPU (infer/weights.py)."""
        super().__init__(model, device, pad_id)
        self.quantize = quantize
        self.prefixes = PrefixCache(prefix_cache_bytes)
        self._built_for: int | None = None
        self._bank: AdapterBank | None = None
        self._lora = NO_ADAPTERS
        self.keys: torch.Tensor | None = None  # [layers, slots, kv heads, length, head dim]
        self.values: torch.Tensor | None = None

    # --- the model's weights, fused once ----------------------------------------------------------
    def _build(self) -> None:
        if self._built_for == id(self.model):
            return
        # The fused weights must be ordinary tensors, not inference-mode ones (admit runs under
        # inference_mode): they back the model's own parameters from now on.
        with torch.inference_mode(False), torch.no_grad():
            self._build_now()

    def _build_now(self) -> None:
        base = base_of(self.model)
        config = base.config
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.eps = config.rms_norm_eps
        self.embed = base.model.embed_tokens.weight
        self.norm = base.model.norm.weight
        cpu = self.device == "cpu"
        # A rebuild (an adapter attached) lets the previous copies go first: they would count
        # against the room for the new ones, and three copies would be alive at once.
        self.head, self.layers = None, []
        # the reordered weights copy the projections and the head (the model's size, at most
        # an embedding more)
        reorder = cpu and room_for(sum(p.numel() * p.element_size() for p in base.parameters()))
        if cpu and not reorder:
            log.warning(
                "%s is served by F.linear: no memory for reordered weights", base.name_or_path
            )
        # --quantize int4 reads the checkpoint's own fp32 values: are its weights 4-bit?
        pack = packing(
            self.quantize, self.embed.dtype, base.name_or_path if cpu else None, cpu, reorder
        )
        self.head = pack(base.lm_head.weight, ("lm_head.weight",))
        self.rotary = base.model.rotary_emb
        self.scaling = self.head_dim**-0.5
        for index, block in enumerate(base.model.layers):
            attn, mlp = block.self_attn, block.mlp
            modules = {
                name: getattr(attn if name[0] in "qkvo" else mlp, name) for name in PROJECTIONS
            }
            qkv = _fuse([modules["q_proj"], modules["k_proj"], modules["v_proj"]])
            gate_up = _fuse([modules["gate_proj"], modules["up_proj"]])
            self.layers.append(
                Layer(
                    qkv=pack(qkv, _names(index, "q_proj", "k_proj", "v_proj")),
                    o=pack(_weight(modules["o_proj"]), _names(index, "o_proj")),
                    gate_up=pack(gate_up, _names(index, "gate_proj", "up_proj")),
                    down=pack(_weight(modules["down_proj"]), _names(index, "down_proj")),
                    attn_norm=block.input_layernorm.weight,
                    mlp_norm=block.post_attention_layernorm.weight,
                    modules=modules,
                )
            )
        self._built_for = id(self.model)
        self._bank, self._lora = None, NO_ADAPTERS

    def _lora_for(self, adapters: list[str | None]) -> Lora:
        """The LoRA deltas of rows using `adapters`; the bank grows when a new adapter is used."""
        used = sorted({a for a in adapters if a is not None})
        if used and (self._bank is None or not set(used) <= set(self._bank.names)):
            names = sorted({*used, *(self._bank.names if self._bank else [])})
            with torch.inference_mode(False), torch.no_grad():
                self._bank = AdapterBank(self.layers, names)
        return Lora(self._bank, adapters)

    def _adapters_changed(self) -> None:
        """The rows changed: gather their adapters' weights once for the steps to come."""
        self._lora = self._lora_for([row.adapter for row in self.rows])

    # --- the cache -------------------------------------------------------------------------------
    def _reserve(self, slots: int, length: int) -> None:
        """Room for `slots` rows of `length` tokens, doubling (amortised: a few copies a run)."""
        if self.keys is not None and self.keys.shape[1] >= slots and self.keys.shape[3] >= length:
            return
        have_slots = self.keys.shape[1] if self.keys is not None else 0
        have_length = self.keys.shape[3] if self.keys is not None else FIRST_LENGTH // 2
        new_slots = max(slots, have_slots)
        new_length = have_length
        while new_length < length:
            new_length *= 2
        shape = (len(self.layers), new_slots, self.n_kv, new_length, self.head_dim)
        keys = self.embed.new_zeros(shape)
        values = self.embed.new_zeros(shape)
        if self.keys is not None:
            keys[:, :have_slots, :, : self.keys.shape[3]] = self.keys
            values[:, :have_slots, :, : self.values.shape[3]] = self.values
        self.keys, self.values = keys, values

    # --- one forward over new tokens -------------------------------------------------------------
    def _forward(self, parts: list[Part]) -> torch.Tensor:
        """Run the new tokens of every part through the decoder in one pass, writing their keys
        and values into the cache at their positions; the logits of each row's last token,
        [rows of all parts, vocab] in fp32 on the CPU, in the parts' order.

        The projections multiply all parts' tokens at once (a decode step's rows and the
        newcomers' prompts read each weight once); attention and the adapters go part by part."""
        sizes = [part.ids.numel() for part in parts]
        x = F.embedding(torch.cat([part.ids.reshape(-1) for part in parts]), self.embed)
        views = [self._attention_view(part, x) for part in parts]
        for index, layer in enumerate(self.layers):
            h = _rms(x, layer.attn_norm, self.eps)
            qkv = self._adapt(index, "qkv", parts, sizes, h, linear(h, layer.qkv))
            attn = [
                self._attend(index, part, view, piece)
                for part, view, piece in zip(parts, views, qkv.split(sizes), strict=True)
            ]
            attn = attn[0] if len(attn) == 1 else torch.cat(attn)
            x = x + self._adapt(index, "o", parts, sizes, attn, linear(attn, layer.o))
            h = _rms(x, layer.mlp_norm, self.eps)
            gate, up = self._adapt(
                index, "gate_up", parts, sizes, h, linear(h, layer.gate_up)
            ).chunk(2, dim=-1)
            act = F.silu(gate) * up
            x = x + self._adapt(index, "down", parts, sizes, act, linear(act, layer.down))
        last = [
            piece.view(*part.ids.shape, -1)[:, -1]
            for part, piece in zip(parts, x.split(sizes), strict=True)
        ]
        return linear(_rms(torch.cat(last), self.norm, self.eps), self.head).float().cpu()

    def _attention_view(self, part: Part, x: torch.Tensor) -> AttentionView:
        """What a part's attention needs in every layer, worked out once per forward."""
        t = part.ids.shape[1]
        positions = part.positions
        cos, sin = self.rotary(x, positions)
        end = int(positions.max()) + 1
        start = int(positions[0, 0])
        if t > 1 and start == 0:  # a prefill from the start: causal within itself
            mask, causal = None, True
        elif t > 1:  # the rest of a prompt whose prefix came from the prefix cache
            mask = torch.arange(end, device=x.device)[None, :] <= positions[0, :, None]
            mask, causal = mask[None, None], False
        else:  # a decode step: each row sees its own filled positions
            mask = torch.arange(end, device=x.device)[None, :] <= positions
            mask = None if bool(mask.all()) else mask[:, None, None, :]
            causal = False
        slot_ids = torch.arange(part.rows.start, part.rows.stop, device=x.device)
        return AttentionView(cos.unsqueeze(1), sin.unsqueeze(1), start, end, mask, causal, slot_ids)

    def _attend(
        self,
        index: int,
        part: Part,
        view: AttentionView,
        qkv: torch.Tensor,  # [rows * tokens, (heads + 2 * kv heads) * head dim]
    ) -> torch.Tensor:
        """One part's attention in layer `index`, its keys and values written to the cache;
        [rows * tokens, heads * head dim]."""
        n, t = part.ids.shape
        rotated = self.n_heads + self.n_kv  # q's heads and k's, side by side in qkv
        qkv = qkv.reshape(n, t, rotated + self.n_kv, self.head_dim).transpose(1, 2)
        # the rotary embedding once for q and k: the same elementwise ops, half as many calls
        qk = qkv[:, :rotated]
        qk = qk * view.cos + _rotate_half(qk) * view.sin
        q, k = qk.split((self.n_heads, self.n_kv), dim=1)
        v = qkv[:, rotated:]
        cache_k, cache_v = self.keys[index], self.values[index]
        rows, start, end = part.rows, view.start, view.end
        if t > 1:
            cache_k[rows, :, start:end] = k
            cache_v[rows, :, start:end] = v
            keys, values = (
                (k, v) if start == 0 else (cache_k[rows, :, :end], cache_v[rows, :, :end])
            )
        else:
            cache_k[view.slot_ids, :, part.positions[:, 0]] = k[:, :, 0]
            cache_v[view.slot_ids, :, part.positions[:, 0]] = v[:, :, 0]
            keys, values = cache_k[rows, :, :end], cache_v[rows, :, :end]
        if t == 1 and q.dtype != FP32:  # in fp32, SDPA was as fast or faster
            attn = _decode_attention(q, keys, values, view.mask, self.scaling)
        else:
            attn = F.scaled_dot_product_attention(
                q,
                keys,
                values,
                attn_mask=view.mask,
                is_causal=view.causal,
                scale=self.scaling,
                enable_gqa=self.n_kv != self.n_heads,
            )
        return attn.transpose(1, 2).reshape(n * t, self.n_heads * self.head_dim)

    @staticmethod
    def _adapt(
        index: int,
        group: str,
        parts: list[Part],
        sizes: list[int],
        h: torch.Tensor,
        out: torch.Tensor,
    ) -> torch.Tensor:
        """`out`, the base projection of `h` for all parts, plus each part's rows' adapters."""
        if not any(part.lora.active for part in parts):
            return out
        pieces = []
        for part, h_part, out_part in zip(parts, h.split(sizes), out.split(sizes), strict=True):
            n, t = part.ids.shape
            added = part.lora.add(index, group, h_part.view(n, t, -1), out_part.view(n, t, -1))
            pieces.append(added.reshape(n * t, -1))
        return torch.cat(pieces)

    # --- the batch's contract --------------------------------------------------------------------
    @torch.inference_mode()
    def admit(self, newcomers: list[Generation]) -> None:
        """Prefill the newcomers, each into a slot of its own (prompts of different lengths need
        no padding this way), and sample their first tokens; the running rows take their next
        decode step in the same forward (they would wait for the prefill otherwise, and the
        weights are read once for both).

        A newcomer that shares blocks of its prompt with another one not yet in the prefix cache
        waits for the next forward, and takes them from the cache there."""
        self._build()
        together: list[Generation] = []
        claimed: set[int] = set()  # the blocks the newcomers together compute
        for seq in newcomers:
            computed = self.prefixes.missing(seq.adapter, seq.prompt_ids)
            if computed & claimed:
                self._prefill(together)
                together, claimed = [], set()
                computed = self.prefixes.missing(seq.adapter, seq.prompt_ids)
            together.append(seq)
            claimed |= computed
        self._prefill(together)

    def _prefill(self, newcomers: list[Generation]) -> None:
        if not newcomers:  # `admit([])` takes no step
            return
        running = len(self.rows)
        self._reserve(
            running + len(newcomers),
            max([*(p + 1 for p in self.positions), *(len(s.prompt_ids) + 1 for s in newcomers)]),
        )
        parts = [self._decode_part()] if running else []
        for offset, seq in enumerate(newcomers):
            slot = running + offset
            cached = self._from_prefix_cache(seq, slot)
            parts.append(
                Part(
                    ids=torch.tensor([seq.prompt_ids[cached:]], device=self.device),
                    positions=torch.arange(cached, len(seq.prompt_ids), device=self.device)[None],
                    rows=slice(slot, slot + 1),
                    lora=self._lora_for([seq.adapter]),
                )
            )
        logits = self._forward(parts)
        self._advance(logits[:running])
        for offset, seq in enumerate(newcomers):
            slot, length = running + offset, len(seq.prompt_ids)
            self.prefixes.store(
                seq.adapter,
                seq.prompt_ids,
                self.keys[:, slot, :, :length],
                self.values[:, slot, :, :length],
            )
            self.rows.append(seq)
            self.positions.append(length)
            self.last.append(0)
            self._sample(seq, logits[running + offset], slot)
        self._adapters_changed()

    def _decode_part(self) -> Part:
        """The running rows' next tokens: a row fills its slot from 0, so its next position is
        also its cached length."""
        n = len(self.rows)
        return Part(
            ids=torch.tensor(self.last, device=self.device)[:, None],
            positions=torch.tensor(self.positions, device=self.device)[:, None],
            rows=slice(0, n),
            lora=self._lora,
        )

    def _advance(self, logits: torch.Tensor) -> None:
        """The running rows took a decode step: sample each one's next token."""
        for row, seq in enumerate(self.rows):
            self.positions[row] += 1
            self._sample(seq, logits[row], row)

    def _from_prefix_cache(self, seq: Generation, slot: int) -> int:
        """Copy the cached blocks that start this prompt into its slot; how many tokens."""
        blocks = self.prefixes.match(seq.adapter, seq.prompt_ids)
        size = PrefixCache.BLOCK
        for index, (keys, values) in enumerate(blocks):
            self.keys[:, slot, :, index * size : (index + 1) * size] = keys
            self.values[:, slot, :, index * size : (index + 1) * size] = values
        self.prefixes.hits += len(blocks) * size
        return len(blocks) * size

    def can_merge(self) -> bool:
        return True  # a newcomer takes a free slot; nothing is re-padded

    @torch.inference_mode()
    def step(self) -> None:
        self._reserve(len(self.rows), max(self.positions) + 1)
        self._advance(self._forward([self._decode_part()]))
        self.drop_finished()

    @torch.inference_mode()  # the cache is an inference tensor: moved in inference mode only
    def drop_finished(self) -> None:
        done = [row for row, s in enumerate(self.rows) if s.done]
        if not done:
            return
        for row in reversed(done):  # fill each hole with the last row: slots stay 0..B-1
            last = len(self.rows) - 1
            if row != last:
                length = self.positions[last]
                self.keys[:, row, :, :length] = self.keys[:, last, :, :length]
                self.values[:, row, :, :length] = self.values[:, last, :, :length]
                for items in (self.rows, self.positions, self.last):
                    items[row] = items[last]
            for items in (self.rows, self.positions, self.last):
                items.pop()
        if self.rows:
            self._adapters_changed()
        else:
            self._lora = NO_ADAPTERS

    def fail_all(self, error: BaseException) -> None:
        for seq in self.rows:
            seq.fail(error)
        self.rows, self.positions, self.last = [], [], []
        self._lora = NO_ADAPTERS
