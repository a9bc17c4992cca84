"""The engine's fast paths give what one-at-a-time generation gives; a request that fails or
leaves takes nothing from the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.data.records import Message
from tunesmith.data.render import encode_prompt
from tunesmith.infer.engine import Engine
from tunesmith.infer.sampling import NothingAllowed, SamplingParams
from tunesmith.models.spec import ModelSpec

GREEDY = SamplingParams(max_tokens=12, temperature=0)
PROMPTS = ["Hello!", "List three colors.", "What is two plus two? " * 4, "Ship 3 lamps to Oslo"]


def local(folder: Path, adapter: Path | None = None, name: str = "m") -> ModelSpec:
    return ModelSpec(
        name=name, kind="local", base=str(folder), weights=str(folder), adapter=adapter
    )


def on_a_fresh_loop(coro):
    """`asyncio.run` on a thread of its own: the browser tests' sync Playwright leaves an event
    loop running on the main thread, and these tests must not depend on running before them."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """Two random LoRA adapters (B initialised non-zero, so each really changes the output)."""
    from peft import LoraConfig, get_peft_model

    out = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        config = LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False)
        folder = tmp_path_factory.mktemp(f"adapter{seed}")
        get_peft_model(base, config).save_pretrained(folder)
        out.append(folder)
    return out


@pytest.fixture(params=[True, False], ids=["slot-cache", "transformers-forward"])
def engine(request):
    """Both decode paths pass every test here: the slot cache (infer/slots.py, Llama-family
    models) and transformers' own forward (batch.py, every other model)."""
    e = Engine(max_batch=8, device="cpu", fast_decode=request.param)
    yield e
    e.close()


def prompt_ids(engine, spec, text):
    return encode_prompt(engine.tokenizer(spec), [Message(role="user", content=text)])


def test_batched_greedy_equals_one_at_a_time(engine, tiny_model_dir, reference):
    spec = local(tiny_model_dir)
    ids = [prompt_ids(engine, spec, p) for p in PROMPTS]
    batched = [engine.submit(spec, i, GREEDY) for i in ids]
    batched = [engine.wait(s).token_ids for s in batched]
    single = [engine.wait(engine.submit(spec, i, GREEDY)).token_ids for i in ids]
    assert batched == single
    # ...and both equal plain `generate` (the random tiny model never emits its end token here).
    expected = reference(tiny_model_dir, None, ids[0], GREEDY.max_tokens)
    assert expected.same_but_at_near_ties(single[0]) >= GREEDY.max_tokens // 2


def test_requests_joining_a_running_batch_get_the_same_tokens(engine, tiny_model_dir):
    spec = local(tiny_model_dir)
    long = SamplingParams(max_tokens=40, temperature=0)
    first = engine.submit(spec, prompt_ids(engine, spec, PROMPTS[0]), long)
    next(engine.stream(first))  # the first request is decoding; now others join its batch
    later = [engine.submit(spec, prompt_ids(engine, spec, p), GREEDY) for p in PROMPTS[1:]]
    joined = [engine.wait(s).token_ids for s in later]
    engine.wait(first)
    alone = [engine.wait(engine.submit(spec, prompt_ids(engine, spec, p), GREEDY)).token_ids
             for p in PROMPTS[1:]]  # fmt: skip
    assert joined == alone


def test_mixed_adapters_in_one_batch_each_get_their_own(
    engine, tiny_model_dir, adapters, reference
):
    specs = [
        local(tiny_model_dir),
        *(local(tiny_model_dir, a, f"a{i}") for i, a in enumerate(adapters)),
    ]
    ids = prompt_ids(engine, specs[0], PROMPTS[1])
    mixed = [engine.submit(s, ids, GREEDY) for s in specs]  # queued together: one batch
    mixed = [engine.wait(s).token_ids for s in mixed]
    for spec, tokens in zip(specs, mixed, strict=True):
        expected = reference(tiny_model_dir, spec.adapter, ids, GREEDY.max_tokens)
        assert expected.same_but_at_near_ties(tokens) >= GREEDY.max_tokens // 2
    assert len({tuple(t) for t in mixed}) == 3  # the adapters really differ


def test_adapters_with_unequal_shares_of_a_batch_each_get_their_own(
    engine, tiny_model_dir, adapters
):
    """The slot cache groups a batch's rows by adapter and pads the groups to the largest one:
    two rows on one adapter, one on another and one on none answer as each does alone."""
    specs = [
        local(tiny_model_dir, adapters[0], "a0"),
        local(tiny_model_dir),
        local(tiny_model_dir, adapters[1], "a1"),
        local(tiny_model_dir, adapters[0], "a0"),
    ]
    ids = [
        prompt_ids(engine, specs[0], p) for p in (PROMPTS[1], PROMPTS[1], PROMPTS[1], PROMPTS[2])
    ]
    mixed = [engine.submit(s, i, GREEDY) for s, i in zip(specs, ids, strict=True)]
    mixed = [engine.wait(s).token_ids for s in mixed]
    alone = [engine.wait(engine.submit(s, i, GREEDY)).token_ids
             for s, i in zip(specs, ids, strict=True)]  # fmt: skip
    assert mixed == alone
    assert len({tuple(t) for t in mixed[:3]}) == 3  # same prompt, three different answers


def test_every_pair_of_three_adapters_in_a_batch_gets_its_own(
    engine, tiny_model_dir, adapters, tmp_path
):
    """With three adapters attached, a batch of two of them: for one of the three pairs the
    third lies between them in the slot cache's bank (their tables are copied, not viewed)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "third")
    folders = [*adapters, tmp_path / "third"]
    specs = [local(tiny_model_dir, f, f"a{i}") for i, f in enumerate(folders)]
    ids = prompt_ids(engine, specs[0], PROMPTS[1])
    alone = [engine.wait(engine.submit(s, ids, GREEDY)).token_ids for s in specs]
    assert len({tuple(t) for t in alone}) == 3
    for x, y in ((0, 1), (0, 2), (1, 2)):
        batch = [specs[x], specs[y], specs[x]]
        mixed = [engine.submit(s, ids, GREEDY) for s in batch]
        assert [engine.wait(s).token_ids for s in mixed] == [alone[x], alone[y], alone[x]]


def test_an_adapter_on_some_projections_gets_its_own_alone_and_beside_another(
    engine, tiny_model_dir, adapters, reference, tmp_path
):
    """PEFT's default targets for Llama are q_proj and v_proj: alone, k's and the MLP's updates
    are empty (the slot cache's bank has rank 0 there); beside an all-linear adapter, q and v
    sit at their places among the other's projections."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(4)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "qv")
    qv = local(tiny_model_dir, tmp_path / "qv", "qv")
    ids = prompt_ids(engine, qv, PROMPTS[1])
    expected = reference(tiny_model_dir, qv.adapter, ids, GREEDY.max_tokens)
    alone = engine.wait(engine.submit(qv, ids, GREEDY)).token_ids
    assert expected.same_but_at_near_ties(alone) >= GREEDY.max_tokens // 2
    other = local(tiny_model_dir, adapters[0], "a0")
    mixed = [engine.submit(s, ids, GREEDY) for s in (qv, other, qv)]
    mixed = [engine.wait(s).token_ids for s in mixed]
    assert mixed[0] == mixed[2] == alone
    assert mixed[1] == engine.wait(engine.submit(other, ids, GREEDY)).token_ids != alone


def test_adapters_are_loaded_once(engine, tiny_model_dir, adapters):
    spec = local(tiny_model_dir, adapters[0], "a0")
    for _ in range(3):
        engine.wait(engine.submit(spec, prompt_ids(engine, spec, "hi"), GREEDY))
    loaded, name = engine.load(spec)
    assert list(loaded.adapters) == [str(adapters[0])]
    assert list(loaded.model.peft_config) == [name]


def test_stop_strings_and_length_limit(engine, tiny_model_dir):
    spec = local(tiny_model_dir)
    ids = prompt_ids(engine, spec, PROMPTS[1])
    full = engine.wait(engine.submit(spec, ids, SamplingParams(max_tokens=20, temperature=0)))
    assert full.finish_reason == "length" and full.completion_tokens == 20
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 3]
    cut = engine.wait(
        engine.submit(spec, ids, SamplingParams(max_tokens=20, temperature=0, stop=[stop]))
    )
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.find(stop)]


def test_stream_deltas_add_up_to_the_completion(engine, tiny_model_dir):
    spec = local(tiny_model_dir)
    seq = engine.submit(spec, prompt_ids(engine, spec, PROMPTS[2]), GREEDY)
    deltas = list(engine.stream(seq))
    assert deltas[-1].finish_reason == "length"
    assert "".join(d.text for d in deltas) == seq.completion().text
    assert sum(len(d.token_ids) for d in deltas) == GREEDY.max_tokens


def test_seeded_sampling_repeats_and_differs_across_seeds(engine, tiny_model_dir):
    spec = local(tiny_model_dir)
    ids = prompt_ids(engine, spec, PROMPTS[0])

    def sample(seed):
        params = SamplingParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=seed)
        return engine.wait(engine.submit(spec, ids, params)).token_ids

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)


# A row that cannot go on: a bias on a token the model does not have, or guided decoding whose
# names no token can spell, from the first token on or from the second (the two paths: prefill
# and decode step), greedy or sampled.
BAD_ROWS = {
    "logit_bias past the vocabulary": SamplingParams(
        max_tokens=12, temperature=0, logit_bias={10**6: 5.0}
    ),
    "guide stuck at the first token": SamplingParams(
        max_tokens=12, temperature=0, guide="tool_call", tools={"工具": None}
    ),
    "guide stuck at the second token": SamplingParams(
        max_tokens=12, temperature=0, guide="tool_call", tools={"a工具": None}
    ),
    "sampled guide stuck": SamplingParams(
        max_tokens=12, temperature=1.0, seed=1, guide="tool_call", tools={"工具": None}
    ),
}


def together(engine: Engine, spec: ModelSpec, runs: list) -> list:
    """Submitted in one hop, so prefilled as one group and decoded as one batch; each one's
    completion, or the error it failed with."""

    async def run():
        seqs = await engine.submit_async(spec, runs)
        return await asyncio.gather(*(engine.wait_async(s) for s in seqs), return_exceptions=True)

    return on_a_fresh_loop(run())


@pytest.mark.parametrize("bad", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_a_row_that_fails_fails_alone(engine, tiny_model_dir, bad):
    spec = local(tiny_model_dir)
    ids = [prompt_ids(engine, spec, p) for p in PROMPTS]
    alone = [engine.wait(engine.submit(spec, i, GREEDY)).token_ids for i in ids]
    runs = [(i, GREEDY) for i in ids]
    runs.insert(2, (ids[0], bad))  # in the middle: the rows after it keep their places
    results = together(engine, spec, runs)
    failed = results.pop(2)
    assert [c.token_ids for c in results] == alone
    assert isinstance(failed, NothingAllowed if bad.guide else IndexError)


def test_a_failing_row_joining_a_running_batch_leaves_it_running(engine, tiny_model_dir):
    spec = local(tiny_model_dir)
    ids = prompt_ids(engine, spec, PROMPTS[1])
    long = SamplingParams(max_tokens=40, temperature=0)
    alone = engine.wait(engine.submit(spec, ids, long)).token_ids
    running = engine.submit(spec, ids, long)
    next(engine.stream(running))  # decoding; now the bad request is merged into its batch
    with pytest.raises(NothingAllowed):
        engine.wait(engine.submit(spec, ids, BAD_ROWS["guide stuck at the second token"]))
    assert engine.wait(running).token_ids == alone


def test_any_64_bit_seed_is_taken_negative_ones_too(engine, tiny_model_dir):
    spec = local(tiny_model_dir)
    ids = prompt_ids(engine, spec, PROMPTS[0])

    def sample(seed):
        params = SamplingParams(max_tokens=6, temperature=1.0, seed=seed)
        return engine.wait(engine.submit(spec, ids, params)).token_ids

    assert sample(-1) == sample(2**64 - 1)  # one generator state, as torch reads seeds
    assert sample(-(2**63)) and sample(2**63 + 5)


def test_the_async_front_door_gives_what_the_threaded_one_gives(engine, tiny_model_dir):
    spec = local(tiny_model_dir)
    ids = [prompt_ids(engine, spec, p) for p in PROMPTS[:3]]
    threaded = [engine.wait(engine.submit(spec, i, GREEDY)).token_ids for i in ids]

    async def on_a_loop():
        seqs = await engine.submit_async(spec, [(i, GREEDY) for i in ids])
        streamed = [d async for d in engine.stream_async(seqs[0])]
        rest = [await engine.wait_async(s) for s in seqs[1:]]
        first = [t for d in streamed for t in d.token_ids]
        return [first, *(c.token_ids for c in rest)]

    assert on_a_fresh_loop(on_a_loop()) == threaded


def test_a_cancelled_request_leaves_the_batch(engine, tiny_model_dir):
    spec = local(tiny_model_dir)
    ids = prompt_ids(engine, spec, PROMPTS[0])
    seq = engine.submit(spec, ids, SamplingParams(max_tokens=2000, temperature=0))
    next(engine.stream(seq))
    seq.cancel()
    engine.load(spec)  # a task runs between steps: the second one after at least one more step
    loaded, _ = engine.load(spec)
    assert seq not in loaded.batch.rows and len(seq.generated) < 2000


def test_a_request_cancelled_while_it_waits_is_never_prefilled(engine, tiny_model_dir):
    spec = local(tiny_model_dir)
    ids = prompt_ids(engine, spec, PROMPTS[0])
    long = SamplingParams(max_tokens=60, temperature=0)  # still running when the last one comes
    full = [engine.submit(spec, ids, long) for _ in range(engine.max_batch)]
    waiting = engine.submit(spec, ids, GREEDY)  # the batch is full: it waits for a free row
    waiting.cancel()
    for seq in full:
        engine.wait(seq)
    engine.wait(engine.submit(spec, ids, GREEDY))  # queued behind it: admitted after its turn
    assert not waiting.generated
