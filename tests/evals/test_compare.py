"""The comparison run: four strategies measured, report files, prompt accounting."""

from __future__ import annotations

import json
import re

import pytest
import torch

from tunesmith.data.readers import read
from tunesmith.data.render import encode_prompt
from tunesmith.evals import strategies as st
from tunesmith.evals.compare import CompareConfig, run_comparison
from tunesmith.evals.report import write_report
from tunesmith.infer.engine import Engine
from tunesmith.models.spec import ModelSpec
from tunesmith.store import open_store


def subset(source, target, n):
    target.write_text("".join(source.read_text().splitlines(keepends=True)[:n]))
    return target


def register_random_adapter(tiny_model_dir, folder, name: str, seed: int) -> str:
    """A random LoRA adapter on the tiny model, registered as the fine-tuned model `name`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False),
    )
    peft.save_pretrained(folder)
    spec = ModelSpec(name, "fine-tuned", str(tiny_model_dir), str(tiny_model_dir), adapter=folder)
    open_store().models.register(spec, None)
    return spec.name


@pytest.fixture
def tiny_tuned(tiny_model_dir, tmp_path):
    return register_random_adapter(tiny_model_dir, tmp_path / "adapter", "ft:tiny:local:cmp:abc", 3)


def compare_here(config: CompareConfig):
    engine = Engine(max_batch=8, merge_adapters=True)
    try:
        return run_comparison(config, open_store(), engine)
    finally:
        engine.close()


def test_few_shot_and_rag_prompts_grow_by_exactly_the_demonstrations(tokenizer, orders):
    class NearestThree:
        def search(self, queries, k):
            return [[5, 6, 7] for _ in queries]

    train = read(orders / "train.jsonl").records[:30]
    tests = read(orders / "test.jsonl").records[:4]
    prompts = st.build_prompts(train, tests, k=3, seed=0, index=NearestThree())

    def tokens(messages) -> int:
        text = tokenizer.apply_chat_template([m.to_openai() for m in messages], tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    for i, test in enumerate(tests):
        system = test.prompt[:1]

        # Each demonstration turn's own tokens: rendered after the same system message, alone.
        def demo_tokens(demos, system=system) -> int:
            turns = [turn for demo in demos for turn in st.demonstration_turns(demo)]
            return sum(tokens([*system, turn]) - tokens(system) for turn in turns)

        zero = len(encode_prompt(tokenizer, prompts.by_strategy[st.ZERO][i]))
        few = len(encode_prompt(tokenizer, prompts.by_strategy[st.FEW][i]))
        rag = len(encode_prompt(tokenizer, prompts.by_strategy[st.RAG][i]))
        assert few - zero == demo_tokens(prompts.shots) > 0
        assert rag - zero == demo_tokens([train[j] for j in (5, 6, 7)]) > 0
        assert prompts.by_strategy[st.TUNED][i] == test.prompt


def test_rag_puts_the_nearest_example_last(orders):
    class FakeIndex:
        def search(self, queries, k):
            return [[2, 0, 1][:k] for _ in queries]

    train = read(orders / "train.jsonl").records[:5]
    tests = read(orders / "test.jsonl").records[:1]
    prompts = st.build_prompts(train, tests, k=3, seed=0, index=FakeIndex())
    rag = prompts.by_strategy[st.RAG][0]
    users = [m.content for m in rag if m.role == "user"]
    expected = [
        train[i].prompt[-1].content for i in (1, 0, 2)
    ]  # nearest (2) right before the question
    assert users[:3] == expected and users[3] == tests[0].prompt[-1].content


def test_a_comparison_on_the_tiny_model_writes_complete_reports(
    tiny_model_dir, tiny_tuned, orders, tmp_path
):
    config = CompareConfig(
        train=subset(orders / "train.jsonl", tmp_path / "train.jsonl", 30),
        test=subset(orders / "test.jsonl", tmp_path / "test.jsonl", 6),
        model=str(tiny_model_dir),
        fine_tuned=tiny_tuned,
        max_tokens=8,
    )
    stages = []
    engine = Engine(max_batch=8, merge_adapters=True)
    try:
        result = run_comparison(
            config, open_store(), engine, lambda s, d, t: stages.append((s, d, t))
        )
    finally:
        engine.close()
    paths = write_report(result, tmp_path / "report")
    data = json.loads(paths["json"].read_text())
    assert [s["name"] for s in data["strategies"]] == list(st.STRATEGIES)
    assert data["metric"] == "json-fields" and data["n"] == 6
    for s in data["strategies"]:
        assert len(s["outputs"]) == 6 and 0 <= s["metric"]["mean"] <= 1
        low, high = s["metric"]["ci"]
        assert low <= s["metric"]["mean"] <= high
        assert s["latency_p95"] >= s["latency_p50"] > 0 and s["cost_per_1000"] > 0
    by_name = {s["name"]: s for s in data["strategies"]}
    assert by_name["few-shot"]["prompt_tokens"] > by_name["zero-shot"]["prompt_tokens"]
    assert by_name["rag"]["prompt_tokens"] > by_name["zero-shot"]["prompt_tokens"]
    assert data["probes"]["base"]["outputs"] and "mean" in data["probes"]["fine-tuned"]
    assert data["recommendation"]["verdict"] in ("fine-tune", "do not fine-tune", "either")
    assert len(data["samples"]["best"]) == 3 and set(data["samples"]["best"][0]["answers"]) == set(
        st.STRATEGIES
    )
    assert ("few-shot", 6, 6) in stages and any(s[0].startswith("probes") for s in stages)

    page = paths["html"].read_text()
    assert page.count("<svg") == 3
    assert data["recommendation"]["headline"].split(":")[0] in page
    # Self-contained: nothing to fetch (the SVGs' xmlns and the README link are not fetched).
    fetched = re.findall(r'(?:src|href)="(https?://[^"]+)"', page)
    assert fetched == []


def test_rag_over_your_own_documents(tiny_model_dir, tiny_tuned, orders, tmp_path):
    """--context-dir: RAG prompts carry passages retrieved from the user's documents."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cities.md").write_text("Tunis is the capital of Tunisia. " * 30)
    (docs / "dates.txt").write_text(
        "Dates are written as YYYY-MM-DD, for example 2026-02-04. " * 30
    )
    config = CompareConfig(
        train=subset(orders / "train.jsonl", tmp_path / "train.jsonl", 12),
        test=subset(orders / "test.jsonl", tmp_path / "test.jsonl", 3),
        model=str(tiny_model_dir),
        fine_tuned=tiny_tuned,
        context_dir=docs,
        shots=2,
        max_tokens=4,
        probes=False,
    )
    engine = Engine(max_batch=4, merge_adapters=True)
    try:
        result = run_comparison(config, open_store(), engine)
    finally:
        engine.close()
    rag = next(s for s in result.strategies if s.name == "rag")
    zero = next(s for s in result.strategies if s.name == "zero-shot")
    assert rag.prompt_tokens > zero.prompt_tokens + 100  # two passages of ~120 words each
    sample = result.samples["best"][0]
    assert set(sample["answers"]) == set(st.STRATEGIES)


def test_preference_pairs_and_good_kto_answers_are_compared_on_the_preferred_answer(tmp_path):
    from tunesmith.evals.compare import _conversations

    user = {"role": "user", "content": "Ship 2 lamps"}
    lines = [
        {
            "input": {"messages": [user]},
            "preferred_output": [{"role": "assistant", "content": "good"}],
            "non_preferred_output": [{"role": "assistant", "content": "bad"}],
        },
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    kto = [
        {"prompt": [user], "completion": [{"role": "assistant", "content": "good"}], "label": True},
        {"prompt": [user], "completion": [{"role": "assistant", "content": "bad"}], "label": False},
    ]
    (tmp_path / "kto.jsonl").write_text("".join(json.dumps(x) + "\n" for x in kto))
    for name in ("pairs.jsonl", "kto.jsonl"):
        convs = _conversations(read(tmp_path / name).records, tmp_path / name)
        assert [c.answer.content for c in convs] == ["good"], name
        assert convs[0].prompt[-1].content == "Ship 2 lamps"


def test_two_fine_tuned_models_are_ranked_and_the_best_named(
    tiny_model_dir, tiny_tuned, orders, tmp_path
):
    other = register_random_adapter(tiny_model_dir, tmp_path / "other", "ft:tiny:local:cmp:def", 5)
    config = CompareConfig(
        train=subset(orders / "train.jsonl", tmp_path / "train.jsonl", 12),
        test=subset(orders / "test.jsonl", tmp_path / "test.jsonl", 4),
        model=str(tiny_model_dir), fine_tuned=[tiny_tuned, other], shots=1, max_tokens=4,
    )  # fmt: skip
    result = compare_here(config)
    data = json.loads(json.dumps(result.to_dict()))
    names = [s["name"] for s in data["strategies"]]
    assert names == ["zero-shot", "few-shot", "rag", "fine-tuned #1", "fine-tuned #2"]
    assert [s["model"] for s in data["strategies"][3:]] == [tiny_tuned, other]
    rec = data["recommendation"]
    assert sorted(rec["ranking"]) == sorted(names)
    means = {s["name"]: s["metric"]["mean"] for s in data["strategies"]}
    assert [means[n] for n in rec["ranking"]] == sorted(means.values(), reverse=True)
    best = next(n for n in rec["ranking"] if n.startswith("fine-tuned"))
    best_model = next(s["model"] for s in data["strategies"] if s["name"] == best)
    assert rec["fine_tuned"] == best and best_model in rec["headline"]
    assert set(data["probes"]) == {"base", "fine-tuned #1", "fine-tuned #2"}
    assert set(data["samples"]["best"][0]["answers"]) == set(names)
    page = write_report(result, tmp_path / "report")["html"].read_text()
    assert "<th>rank</th>" in page and tiny_tuned in page and other in page


def test_a_function_calling_comparison(tiny_model_dir, tiny_tuned, tool_data, tokenizer, tmp_path):
    train, test = tool_data
    config = CompareConfig(
        train=train, test=test, model=str(tiny_model_dir), fine_tuned=tiny_tuned, shots=2,
        max_tokens=6, probes=False,
    )  # fmt: skip
    result = compare_here(config)
    assert result.metric == "tool-calls" and result.n == 2
    tests = read(test).records
    by_name = {s.name: s for s in result.strategies}
    for s in result.strategies:
        assert set(s.metric["figures"]) == {
            "function", "argument precision", "argument recall", "arguments exact",
        }  # fmt: skip
    # Every strategy is offered the tools, as training shows them (the tools are most of it).
    offered = [len(encode_prompt(tokenizer, t.prompt, t.tools)) for t in tests]
    assert by_name["zero-shot"].prompt_tokens == sum(offered) / 2
    assert by_name["fine-tuned"].prompt_tokens == sum(offered) / 2
    assert by_name["few-shot"].prompt_tokens > sum(offered) / 2
    sample = result.samples["best"][0]
    assert sample["reference"].startswith("<tool_call>{")
    page = write_report(result, tmp_path / "report")["html"].read_text()
    assert "<th>also</th>" in page and "argument recall" in page
    # The side-by-side view shows the calls as the metric reads them.
    assert "move {&quot;direction&quot;: &quot;left&quot;, &quot;distance&quot;: 3}" in page
    assert "land {}" in page
