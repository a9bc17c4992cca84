"""The slot-cache decode path (infer/slots.py) gives the tokens plain `generate` gives: on the
real built-in model, when rows join and leave, past the first cache length, and with adapters;
an adapter it cannot apply (DoRA) is served by the general path instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.data.records import Message
from tunesmith.data.render import encode_prompt
from tunesmith.infer.batch import RunningBatch
from tunesmith.infer.engine import Engine
from tunesmith.infer.generation import Generation
from tunesmith.infer.sampling import SamplingParams
from tunesmith.infer.slots import FIRST_LENGTH, PrefixCache, SlotBatch, _weight
from tunesmith.infer.weights import packs_fp16
from tunesmith.models.spec import ModelSpec

PROMPTS = ["Hello!", "List three colors.", "What is two plus two?", "Ship 3 lamps to Oslo"]


def local(folder: Path, adapter: Path | None = None, name: str = "m") -> ModelSpec:
    return ModelSpec(
        name=name, kind="local", base=str(folder), weights=str(folder), adapter=adapter
    )


@pytest.fixture
def engine():
    e = Engine(max_batch=8, device="cpu", fast_decode=True)
    yield e
    e.close()


def loaded(engine: Engine):
    (only,) = engine._bases.values()
    return only


def ids_of(engine: Engine, spec: ModelSpec, text: str) -> list[int]:
    return encode_prompt(engine.tokenizer(spec), [Message(role="user", content=text)])


@pytest.mark.slow
def test_the_built_in_model_decodes_on_slots_as_generate_does(
    engine, builtin_dir, reference
) -> None:
    spec = local(builtin_dir)
    # Rows that end at different steps: each leaving row's slot is refilled by the last one.
    # (transformers' own batched forward, left-padded, does not always give these tokens.)
    runs = [(ids_of(engine, spec, p), SamplingParams(max_tokens=n, temperature=0))
            for p, n in zip(PROMPTS, (24, 6, 16, 10), strict=True)]  # fmt: skip
    batched = [engine.submit(spec, ids, params) for ids, params in runs]
    batched = [engine.wait(s) for s in batched]
    assert isinstance(loaded(engine).batch, SlotBatch)
    for (ids, params), done in zip(runs, batched, strict=True):
        # generate (told of no end) goes on past the end-of-turn token where the engine stops.
        expected = reference(builtin_dir, None, ids, params.max_tokens)
        compared = expected.same_but_at_near_ties(done.token_ids)
        assert compared >= min(len(done.token_ids), 6), (compared, done.token_ids)
        if done.finish_reason == "stop" and compared == len(done.token_ids):
            assert expected.tokens[compared] in loaded(engine).stop_ids
        elif done.finish_reason != "stop":
            assert len(done.token_ids) == params.max_tokens


@pytest.mark.slow
def test_one_request_alone_decodes_by_matrix_vector_products_as_generate_does(
    engine, builtin_dir, reference
) -> None:
    """One row in flight: every projection and the head are a GEMV (`weights.linear`'s one-row path),
    with the fused RMSNorm; the tokens are still `generate`'s, for 40 of them."""
    spec = local(builtin_dir)
    ids = ids_of(engine, spec, "Write a short poem about the sea.")
    done = engine.wait(engine.submit(spec, ids, SamplingParams(max_tokens=40, temperature=0)))
    assert len(done.token_ids) >= 20
    assert reference(builtin_dir, None, ids, 40).same_but_at_near_ties(done.token_ids) >= 20


def test_the_fused_rms_norm_equals_llamas_op_by_op_one() -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from tunesmith.infer.slots import _rms

    torch.manual_seed(0)
    norm = LlamaRMSNorm(576, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(576) * 0.2 + 1)
    for dtype in (torch.bfloat16, torch.float32):
        layer = norm.to(dtype)
        x = (torch.randn(4, 3, 576) * 3).to(dtype)
        assert torch.equal(_rms(x, layer.weight, 1e-5), layer(x))


def test_decode_attention_equals_sdpa_within_fp32_rounding() -> None:
    """One query per row against a cache, grouped-query heads, rows of different lengths."""
    from tunesmith.infer.slots import _decode_attention

    torch.manual_seed(0)
    q = torch.randn(3, 9, 1, 64).bfloat16()
    keys, values = torch.randn(2, 3, 3, 40, 64).bfloat16()
    mask = torch.arange(40)[None, :] < torch.tensor([[40], [17], [1]])
    mask = mask[:, None, None, :]
    got = _decode_attention(q, keys, values, mask, 0.125)
    want = torch.nn.functional.scaled_dot_product_attention(
        q.float(), keys.float(), values.float(), attn_mask=mask, scale=0.125, enable_gqa=True
    )
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=2**-7, atol=1e-3)
    alone = _decode_attention(q[2:], keys[2:, :, :1], values[2:, :, :1], None, 0.125)
    torch.testing.assert_close(alone, got[2:], rtol=0, atol=0)  # one key: the value itself


@pytest.mark.slow
@pytest.mark.parametrize("rows", [1, 3])
def test_serving_in_fp32_decodes_as_generate_does(
    builtin_dir, reference, monkeypatch, rows
) -> None:
    """On a CPU without bf16 units tunesmith serves in fp32: a decode step's rows multiply fp16
    copies of the weights with fp32 sums, prompts the reordered fp32 weights (`DenseWeight`):
    generate's fp32 tokens but at near ties."""
    from tunesmith.models import hardware

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    engine = Engine(max_batch=8, device="cpu", fast_decode=True)
    try:
        spec = local(builtin_dir)
        runs = [ids_of(engine, spec, p) for p in PROMPTS[:rows]]
        greedy = SamplingParams(max_tokens=24, temperature=0)
        done = [engine.wait(s) for s in [engine.submit(spec, ids, greedy) for ids in runs]]
        assert loaded(engine).batch.embed.dtype == torch.float32
    finally:
        engine.close()
    for ids, answer in zip(runs, done, strict=True):
        same = reference(builtin_dir, None, ids, 24).same_but_at_near_ties(answer.token_ids)
        assert same >= min(8, len(answer.token_ids)), (same, answer.token_ids)


def test_serving_in_fp32_weights_past_fp16s_range_keep_fp32(
    tiny_model_dir, reference, monkeypatch, tmp_path
) -> None:
    """Serving in fp32, a decode step multiplies fp16 copies of the weights with fp32 sums: a
    weight past fp16's 65504 gets no copy (it would saturate), and products past that range
    stay finite. The tokens are still `generate`'s fp32 ones."""
    from tunesmith.models import hardware

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(1e8)  # weights of ~1e6
        model.model.layers[1].mlp.down_proj.weight.mul_(1e4)  # weights in range, outputs not
    model.save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path)
    engine = Engine(max_batch=8, device="cpu", fast_decode=True)
    try:
        spec = local(tmp_path)
        ids = ids_of(engine, spec, "Ship 3 lamps to Oslo")
        done = engine.wait(engine.submit(spec, ids, SamplingParams(max_tokens=8, temperature=0)))
        layers = loaded(engine).batch.layers
    finally:
        engine.close()
    if packs_fp16():
        assert layers[0].down.half is None and layers[1].down.half is not None
    assert reference(tmp_path, None, ids, 8).same_but_at_near_ties(done.token_ids) >= 4


def test_a_prompt_longer_than_the_first_cache_length_grows_the_cache(
    engine, tiny_model_dir, reference
):
    spec = local(tiny_model_dir)
    short = engine.submit(
        spec, ids_of(engine, spec, "Hi"), SamplingParams(max_tokens=30, temperature=0)
    )
    long_ids = ids_of(engine, spec, "count the words " * (FIRST_LENGTH // 3))
    assert len(long_ids) > FIRST_LENGTH
    long = engine.submit(spec, long_ids, SamplingParams(max_tokens=8, temperature=0))
    expected = reference(tiny_model_dir, None, long_ids, 8)
    assert expected.same_but_at_near_ties(engine.wait(long).token_ids) >= 4
    expected = reference(tiny_model_dir, None, ids_of(engine, spec, "Hi"), 30)
    assert expected.same_but_at_near_ties(engine.wait(short).token_ids) >= 10


def test_without_memory_for_reordered_weights_the_models_own_decode_as_generate(
    engine, tiny_model_dir, reference, monkeypatch
) -> None:
    from tunesmith.infer import slots

    monkeypatch.setattr(slots, "room_for", lambda nbytes: False)
    spec = local(tiny_model_dir)
    ids = ids_of(engine, spec, "Ship 3 lamps to Oslo")
    done = engine.wait(engine.submit(spec, ids, SamplingParams(max_tokens=12, temperature=0)))
    layer = loaded(engine).batch.layers[0]
    assert layer.qkv.packed is None and layer.down.full is _weight(layer.modules["down_proj"])
    assert reference(tiny_model_dir, None, ids, 12).same_but_at_near_ties(done.token_ids) >= 6


def test_a_dora_adapter_is_served_by_the_general_path(
    engine, tiny_model_dir, tmp_path, reference
) -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, target_modules="all-linear", use_dora=True, init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "dora")
    spec = local(tiny_model_dir, tmp_path / "dora", "dora")
    ids = ids_of(engine, spec, PROMPTS[1])
    tokens = engine.wait(engine.submit(spec, ids, SamplingParams(max_tokens=10, temperature=0)))
    expected = reference(tiny_model_dir, tmp_path / "dora", ids, 10)
    assert expected.same_but_at_near_ties(tokens.token_ids) >= 5
    assert type(loaded(engine).batch) is RunningBatch


@pytest.mark.parametrize(
    ("targets", "on_slots"), [("all-linear", True), (["q_proj", "embed_tokens"], False)]
)
def test_which_adapters_the_slot_cache_applies(
    engine, tiny_model_dir, tmp_path, reference, targets, on_slots
) -> None:
    """Read from the model's LoRA layers: PEFT saves this small model's "all-linear" as full
    paths (`model.layers.0.self_attn.q_proj`), still the seven projections; a LoRA on the
    embeddings is not one the slot cache applies."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(4)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, target_modules=targets, init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "lora")
    saved = (tmp_path / "lora" / "adapter_config.json").read_text()
    assert "model.layers.0.self_attn.q_proj" in saved or not on_slots
    spec = local(tiny_model_dir, tmp_path / "lora", "lora")
    ids = ids_of(engine, spec, PROMPTS[1])
    tokens = engine.wait(engine.submit(spec, ids, SamplingParams(max_tokens=10, temperature=0)))
    expected = reference(tiny_model_dir, tmp_path / "lora", ids, 10)
    assert expected.same_but_at_near_ties(tokens.token_ids) >= 5
    assert (type(loaded(engine).batch) is SlotBatch) == on_slots


def test_groups_no_adapter_touches_take_no_lora_work(tiny_model_dir, tmp_path) -> None:
    """Under PEFT's default Llama targets (q_proj, v_proj) only the q/k/v group has ranks: the
    other groups are left out of the rows' tables, so a step adds them no zero update."""
    from peft import LoraConfig, PeftModel, get_peft_model

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "qv")
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "qv", adapter_name="qv"
    )
    batch = SlotBatch(model.eval(), "cpu", 0)
    batch._build()  # what the first admit does
    lora = batch._lora_for(["qv", None])
    assert all(set(tables) == {"qkv"} for tables in lora.per_layer)
    h = torch.randn(2, 1, model.config.hidden_size)
    out = torch.randn(2, 1, model.config.hidden_size)
    assert lora.add(0, "gate_up", h, out) is out


def test_a_shared_prefix_is_computed_once_and_answers_stay_the_same(
    engine, tiny_model_dir, reference
) -> None:
    spec = local(tiny_model_dir)
    tokenizer = engine.tokenizer(spec)
    system = Message(role="system", content="Extract the order as JSON. " * 12)
    asks = ["Ship 3 lamps to Oslo", "Send two chairs to Rome"]
    prompts = [encode_prompt(tokenizer, [system, Message(role="user", content=a)]) for a in asks]
    shared = next(i for i, (a, b) in enumerate(zip(*prompts, strict=False)) if a != b)
    block = PrefixCache.BLOCK
    assert shared >= 2 * block  # the system prompt spans whole blocks
    greedy = SamplingParams(max_tokens=12, temperature=0)
    first = engine.wait(engine.submit(spec, prompts[0], greedy)).token_ids
    prefixes = loaded(engine).batch.prefixes
    assert prefixes.hits == 0
    second = engine.wait(engine.submit(spec, prompts[1], greedy)).token_ids
    assert prefixes.hits == shared // block * block  # the shared blocks were copied, not recomputed
    assert reference(tiny_model_dir, None, prompts[0], 12).same_but_at_near_ties(first) >= 6
    assert reference(tiny_model_dir, None, prompts[1], 12).same_but_at_near_ties(second) >= 6
    again = engine.wait(engine.submit(spec, prompts[1], greedy)).token_ids
    assert again == second  # a whole prompt seen before: all but its last block reused


def test_newcomers_prefill_together_beside_a_running_row_and_share_a_new_prefix(
    tiny_model_dir, tokenizer, reference
) -> None:
    """One `admit` while a row runs: that row takes its next step in the same forward; of two
    newcomers whose shared system prompt is not cached yet, the second waits one forward and
    takes the first's blocks from the prefix cache. Every answer is still `generate`'s."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    batch = SlotBatch(model, "cpu", tokenizer.pad_token_id)
    system = Message(role="system", content="Extract the order as JSON. " * 12)
    prompts = [
        encode_prompt(tokenizer, [system, Message(role="user", content=ask)])
        for ask in ("Hello!", "Ship 3 lamps to Oslo", "Send two chairs to Rome")
    ]
    shared = next(i for i, (a, b) in enumerate(zip(*prompts[1:], strict=False)) if a != b)
    greedy = SamplingParams(max_tokens=12, temperature=0)
    running = Generation(prompts[0][-8:], greedy, None, tokenizer, set())
    batch.admit([running])
    batch.admit([])  # nobody new: no step either
    assert len(running.generated) == 1 and batch.prefixes.hits == 0
    newcomers = [Generation(ids, greedy, None, tokenizer, set()) for ids in prompts[1:]]
    batch.admit(newcomers)
    assert len(running.generated) == 3  # a step in each of the two forwards
    block = PrefixCache.BLOCK
    assert batch.prefixes.hits == shared // block * block
    while len(batch):
        batch.step()
    for ids, seq in ((prompts[0][-8:], running), *zip(prompts[1:], newcomers, strict=True)):
        expected = reference(tiny_model_dir, None, ids, 12)
        assert expected.same_but_at_near_ties(seq.generated) >= 6


def test_the_prefix_cache_keeps_to_its_budget() -> None:
    cache = PrefixCache(max_bytes=3 * 2 * 4 * PrefixCache.BLOCK * 4)  # three blocks of fp32
    keys = torch.ones((1, 1, 10 * PrefixCache.BLOCK, 4))
    cache.store(None, list(range(10 * PrefixCache.BLOCK)), keys, keys)
    assert len(cache.blocks) == 3 and cache.bytes <= cache.max_bytes
    # The oldest (first) blocks went: a lookup stops at the first missing block.
    assert cache.match(None, list(range(10 * PrefixCache.BLOCK))) == []
    assert len(cache.match("other-adapter", list(range(10 * PrefixCache.BLOCK)))) == 0


@pytest.mark.slow
def test_int8_decoding_on_the_built_in_model_stays_close(builtin_dir) -> None:
    """Opt-in int8 keeps the model's first choice for each prompt."""
    spec = local(builtin_dir)
    greedy = SamplingParams(max_tokens=1, temperature=0)
    firsts = {}
    for quantize in (None, "int8"):
        e = Engine(max_batch=8, device="cpu", fast_decode=True, quantize=quantize)
        runs = [e.submit(spec, ids_of(e, spec, p), greedy) for p in PROMPTS]
        firsts[quantize] = [e.wait(r) for r in runs]
        assert loaded(e).batch.quantize == quantize
        e.close()
    for full, int8 in zip(firsts[None], firsts["int8"], strict=True):
        assert int8.token_ids == full.token_ids


@pytest.mark.slow
@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "fp32"])
def test_int4_decodes_the_built_in_model_as_generate_on_its_four_bit_weights(
    builtin_dir, reference, monkeypatch, bf16
) -> None:
    """`--quantize int4` holds the built-in model's projections as the 4-bit numbers its GGUF
    has: rows joining and leaving give the tokens `generate` gives with those weights (bf16
    scales), but at near ties; on a CPU without bf16 units too (the kernel's inputs are bf16)."""
    from tunesmith.infer.weights import Int4Weight
    from tunesmith.models import hardware

    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: bf16)
    engine = Engine(max_batch=8, device="cpu", quantize="int4")
    try:
        spec = local(builtin_dir)
        runs = [(ids_of(engine, spec, p), n) for p, n in zip(PROMPTS, (24, 6, 16, 10), strict=True)]
        waits = [engine.submit(spec, ids, SamplingParams(max_tokens=n, temperature=0))
                 for ids, n in runs]  # fmt: skip
        done = [engine.wait(s) for s in waits]
        batch = loaded(engine).batch
        assert all(isinstance(layer.gate_up, Int4Weight) for layer in batch.layers)
        assert not isinstance(batch.head, Int4Weight)  # the tied head is Q8_0 in the GGUF
    finally:
        engine.close()
    total = 0
    for (ids, n), answer in zip(runs, done, strict=True):
        total += reference(builtin_dir, None, ids, n, int4=True).same_but_at_near_ties(
            answer.token_ids
        )
    assert total >= 24, total


@pytest.mark.slow
def test_int4_serves_an_adapter_beside_the_four_bit_base_where_asked_to_merge(
    builtin_dir, reference, tmp_path
) -> None:
    """compare asks for merged adapters; merged, the weights would not be 4-bit and the
    fine-tuned model would be timed on slower weights than the prompting strategies. So one
    base is loaded, and the adapter applied per row: PEFT's tokens on the 4-bit weights."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(4)
    base = AutoModelForCausalLM.from_pretrained(builtin_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=2, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "lora")
    engine = Engine(max_batch=8, device="cpu", merge_adapters=True, quantize="int4")
    try:
        spec = local(builtin_dir, tmp_path / "lora", "lora")
        ids = ids_of(engine, spec, PROMPTS[2])
        done = engine.wait(engine.submit(spec, ids, SamplingParams(max_tokens=24, temperature=0)))
        assert list(loaded(engine).adapters) == [str(tmp_path / "lora")]  # attached, not merged
    finally:
        engine.close()
    expected = reference(builtin_dir, tmp_path / "lora", ids, 24, int4=True)
    assert expected.same_but_at_near_ties(done.token_ids) >= 8


def peft_tokens_until_a_tie(
    folder: Path, adapter: Path, ids: list[int], n: int
) -> tuple[list[int], int]:
    """PEFT's greedy tokens in the served dtype, and the first step whose best two logits are
    within that dtype's rounding of each other (n when none is)."""
    from peft import PeftModel

    from tunesmith.models.hardware import inference_dtype

    dtype = inference_dtype("cpu")
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(folder, dtype=dtype), str(adapter)
    )
    out = model.generate(
        torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None,
        pad_token_id=0, output_scores=True, return_dict_in_generate=True,
    )  # fmt: skip
    tie = n
    for step, scores in enumerate(out.scores):
        best, second = scores[0].float().topk(2).values.tolist()
        if best - second <= torch.finfo(dtype).eps * abs(best):
            tie = step
            break
    return out.sequences[0, len(ids) :].tolist(), tie


@pytest.mark.slow
def test_an_fp32_adapter_serves_on_the_bf16_built_in_model(engine, builtin_dir, tmp_path) -> None:
    """Trained adapters are saved in fp32 and PEFT keeps them so on a bf16 base, computing their
    update in fp32: the slot path does the same (a trained model's first chat crashed it once),
    and gives PEFT's tokens, for 24 of them."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(4)
    base = AutoModelForCausalLM.from_pretrained(builtin_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=2, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "fp32")
    spec = local(builtin_dir, tmp_path / "fp32", "fp32")
    ids = ids_of(engine, spec, PROMPTS[2])
    done = engine.wait(engine.submit(spec, ids, SamplingParams(max_tokens=24, temperature=0)))
    assert done.finish_reason == "length", done
    expected, tie = peft_tokens_until_a_tie(builtin_dir, tmp_path / "fp32", ids, 24)
    # Equal up to the first step where PEFT's own two best logits are one bf16 step apart: there
    # fp32 rounding of the update (scaling folded into B, batched matmuls) may pick either.
    assert tie >= 8 and done.token_ids[:tie] == expected[:tie], (tie, done.token_ids, expected)
