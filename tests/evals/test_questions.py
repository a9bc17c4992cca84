"""The lesson's questions, answered from a comparison's numbers; thin evidence said so."""

from __future__ import annotations

import pytest

from tunesmith.evals.questions import answer_questions, paired_gain


def row(name: str, scores: list[float], prompt_tokens: float, training=None) -> dict:
    mean = sum(scores) / len(scores)
    return {
        "name": name,
        "metric": {"scores": scores, "mean": mean, "ci": [max(0, mean - 0.1), min(1, mean + 0.1)]},
        "prompt_tokens": prompt_tokens,
        "training": training,
    }


def comparison(n: int, probes: bool = True) -> dict:
    half = n // 2
    strategies = [
        row("zero-shot", [0.0] * n, 40),
        row("few-shot", [1.0] * half + [0.0] * (n - half), 400),
        row("rag", [0.0] * n, 420),
        row("fine-tuned", [1.0] * n, 40, {"seconds": 61.0, "trained_tokens": 12345, "cost": 61.0}),
    ]
    return {
        "n": n,
        "metric": "json-fields",
        "unit": "machine-seconds",
        "config": {"shots": 3, "seed": 0},
        "strategies": strategies,
        "recommendation": {
            "compared_with": "few-shot",
            "fine_tuned": "fine-tuned",
            "break_even": 250,
        },
        "probes": {"base": {"mean": 0.5, "outputs": ["x"] * 60}, "fine-tuned": {"mean": 0.45}}
        if probes
        else None,
    }


def test_each_answer_carries_its_numbers():
    answers = answer_questions(comparison(200), n_train=300)
    assert set(answers) == {"use case", "alternatives", "costs", "benefits", "reuse"}
    assert (
        "200 held-out examples" in answers["use case"]
        and "JSON fields right (metric json-fields)" in answers["use case"]
    )
    assert "few-shot (3 fixed examples in the prompt) 50%" in answers["alternatives"]
    assert "rag (3 nearest examples retrieved) 0%" in answers["alternatives"]
    assert "best prompting strategy is few-shot" in answers["alternatives"]
    assert "300 training examples" in answers["costs"] and "61 s" in answers["costs"]
    assert "12,345 tokens" in answers["costs"] and "fine-tuned 40, few-shot 400" in answers["costs"]
    assert "+50 points" in answers["benefits"] and "90% fewer prompt tokens" in answers["benefits"]
    assert "break-even after about 250 requests" in answers["benefits"]
    assert "base 50%, fine-tuned 45% (-5 points)" in answers["reuse"]


def test_thin_evidence_is_named():
    answers = answer_questions(comparison(30, probes=False), n_train=20)
    assert answers["evidence"].startswith("30 test examples: intervals are wide")
    assert "20 training examples" in answers["evidence"]
    assert "not run" in answers["reuse"]


def test_the_gain_is_paired_on_the_same_examples():
    gain, low, high = paired_gain({"scores": [1, 1, 0, 1]}, {"scores": [0, 1, 0, 1]})
    assert gain == pytest.approx(0.25) and 0 <= low <= gain <= high <= 1
    same, low, high = paired_gain({"scores": [1, 0] * 5}, {"scores": [1, 0] * 5})
    assert same == low == high == 0
