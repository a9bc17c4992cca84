"""Prompts for each strategy on function-calling data (`tool_data` in conftest.py): every strategy offers the tools, and the
demonstrations' calls read exactly as training renders them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.data.readers import read
from tunesmith.data.render import assistant_spans, prompt_text, tool_call_text
from tunesmith.evals import strategies as st
from tunesmith.evals.metrics import choose_metric

DRONE = (
    Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "drone_function_calling"
)


def test_every_strategy_shows_the_tools_and_calls_as_training_does(tokenizer, tool_data):
    class NearestTwo:
        def search(self, queries, k):
            return [[2, 0] for _ in queries]

    train, tests = (read(path).records for path in tool_data)
    prompts = st.build_prompts(train, tests, k=2, seed=0, index=NearestTwo())
    assert prompts.tools == [t.tools for t in tests] and len(tests[0].tools) == 2
    # The zero-shot (and fine-tuned) prompt is exactly what training puts before the answer.
    full, spans = assistant_spans(tokenizer, tests[0])
    zero = prompt_text(tokenizer, prompts.by_strategy[st.ZERO][0], prompts.tools[0])
    assert full[: spans[-1][0]] == zero
    assert prompt_text(tokenizer, prompts.by_strategy[st.TUNED][0], prompts.tools[0]) == zero
    tools_shown = json.dumps(tests[0].tools[0])
    assert tools_shown in zero
    for strategy, demos in ((st.FEW, prompts.shots), (st.RAG, [train[0], train[2]])):
        text = prompt_text(tokenizer, prompts.by_strategy[strategy][0], prompts.tools[0])
        assert text.count(tools_shown) == 1, strategy  # offered once, in the system turn
        for demo in demos:  # each demonstration's answer, token for token as it is trained
            rendered, answer_spans = assistant_spans(tokenizer, demo)
            start, end = answer_spans[-1]
            assert rendered[start:end] in text, strategy
            assert tool_call_text(demo.answer) in text


@pytest.mark.skipif(not DRONE.exists(), reason="the shared datasets are not here")
@pytest.mark.parametrize("name", ["drone_training.jsonl", "drone_training.2024-06-17.jsonl"])
def test_the_drone_set_reads_as_tool_call_data(name):
    """OpenAI's cookbook set: 16 tools per line, one call per answer, no assistant text."""
    result = read(DRONE / name)
    assert result.errors == [] and result.format == "chat"
    assert all(len(c.tools) == 16 and len(c.answer.tool_calls) == 1 for c in result.records)
    references = [tool_call_text(c.answer) for c in result.records]
    assert choose_metric(references) == "tool-calls"
