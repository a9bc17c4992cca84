"""score_model and label_model judged by the real built-in model on a real Engine (greedy)."""

from __future__ import annotations

import pytest

from tunesmith.graders.model import engine_judge
from tunesmith.graders.run import grade, make_sample
from tunesmith.graders.spec import parse_grader
from tunesmith.infer.engine import Engine
from tunesmith.models.catalog import DEFAULT_MODEL, resolve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def judge():
    engine = Engine(max_batch=2, device="cpu")
    yield engine_judge(engine, resolve)
    engine.close()


def test_score_model_answers_a_number_within_range(judge):
    grader = parse_grader(
        {
            "type": "score_model",
            "name": "quality",
            "model": DEFAULT_MODEL,
            "range": [0, 10],
            "sampling_params": {"max_completions_tokens": 6},
            "input": [
                {"role": "system", "content": "You grade answers from 0 to 10."},
                {
                    "role": "user",
                    "content": "Q: {{ item.question }}\nA: {{ sample.output_text }}\nScore it.",
                },
            ],
        }
    )
    result = grade(grader, make_sample("Paris"), {"question": "Capital of France?"}, judge=judge)
    assert not result.errors.any(), result.reason
    assert 0.0 <= result.reward <= 10.0
    usage = result.token_usage[DEFAULT_MODEL]
    assert usage["completion_tokens"] >= 1 and usage["total_tokens"] > usage["prompt_tokens"]


def test_label_model_picks_one_of_the_labels(judge):
    labels = ["correct", "incorrect"]
    grader = parse_grader(
        {
            "type": "label_model",
            "name": "right",
            "model": DEFAULT_MODEL,
            "labels": labels,
            "passing_labels": ["correct"],
            "input": [{"role": "user", "content": "Is '{{ sample.output_text }}' a color?"}],
        }
    )
    result = grade(grader, make_sample("blue"), judge=judge)
    assert not result.errors.any(), result.reason
    assert result.reward in (0.0, 1.0) and result.total_tokens > 0


def test_an_unknown_judge_model_is_that_samples_server_error(judge):
    grader = parse_grader(
        {
            "type": "label_model",
            "name": "l",
            "model": "no-such-model",
            "labels": ["a"],
            "passing_labels": ["a"],
            "input": [{"role": "user", "content": "x"}],
        }
    )
    result = grade(grader, make_sample("x"), judge=judge)
    assert result.errors.model_grader_server_error and "no-such-model" in result.reason
