"""The decision rules, on hand-made measurements."""

from __future__ import annotations

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.evals.decide import Row, break_even, load_prices, recommend


def rows(tuned: tuple, best: tuple) -> list[Row]:
    """(quality, low, high, prompt tokens, cost per request) for fine-tuned and few-shot."""
    return [
        Row("zero-shot", 0.1, 0.05, 0.15, 80, 0.5),
        Row("few-shot", *best),
        Row("rag", 0.2, 0.1, 0.3, 300, 1.0),
        Row("fine-tuned", *tuned),
    ]


def test_fine_tune_when_clearly_better_and_it_pays_back():
    rec = recommend(rows((0.98, 0.96, 0.99, 80, 0.4), (0.60, 0.55, 0.65, 320, 0.7)), 180.0, "s")
    assert rec.verdict == "fine-tune" and rec.compared_with == "few-shot"
    assert rec.headline.startswith("fine-tune: +38 points over few-shot at 75% fewer prompt tokens")
    assert rec.break_even == 600 and "pays back after about 600 requests" in rec.headline
    assert set(rec.answers) == {"quality", "cost", "reuse"}


def test_do_not_fine_tune_when_prompting_is_within_the_interval_at_no_training_cost():
    rec = recommend(rows((0.90, 0.85, 0.94, 80, 0.5), (0.89, 0.84, 0.93, 320, 0.5)), 180.0, "s")
    assert rec.verdict == "do not fine-tune"
    assert rec.headline == "do not fine-tune: few-shot is within the interval at no training cost"


def test_either_when_equal_quality_but_tuned_is_cheaper_per_request():
    rec = recommend(rows((0.90, 0.85, 0.94, 80, 0.2), (0.89, 0.84, 0.93, 320, 0.8)), 120.0, "s")
    assert rec.verdict == "either" and rec.break_even == 200


def test_do_not_fine_tune_when_prompting_is_clearly_better():
    rec = recommend(rows((0.40, 0.35, 0.45, 80, 0.2), (0.80, 0.75, 0.85, 320, 0.8)), 10.0, "s")
    assert rec.verdict == "do not fine-tune" and "scores 40 points higher" in rec.headline


def test_forgetting_is_part_of_the_verdict():
    rec = recommend(
        rows((0.98, 0.96, 0.99, 80, 0.4), (0.6, 0.55, 0.65, 320, 0.7)), 1.0, "s", forgetting=0.2
    )
    assert rec.headline.endswith("(it costs 20 points on the general-ability probes)")
    small = recommend(
        rows((0.98, 0.96, 0.99, 80, 0.4), (0.6, 0.55, 0.65, 320, 0.7)), 1.0, "s", forgetting=0.05
    )
    assert "probes" not in small.headline


def test_break_even():
    assert break_even(100.0, 0.7, 0.2) == 200
    assert break_even(100.0, 0.2, 0.7) is None  # tuned costs more per request: never
    assert break_even(None, 0.7, 0.2) is None
    assert break_even(0.0, 0.7, 0.2) == 1


def test_prices_file(tmp_path):
    good = tmp_path / "prices.yaml"
    good.write_text(
        "currency: EUR\nbase: {input: 0.15, output: 0.6}\nfine-tuned: {input: 0.3, output: 1.2}\ntraining: 3\n"
    )
    prices = load_prices(good)
    assert prices.currency == "EUR"
    assert prices.request(True, 1e6, 0) == pytest.approx(0.3)
    assert prices.request(False, 0, 2e6) == pytest.approx(1.2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: 3\n")
    with pytest.raises(TunesmithError, match="cannot read prices"):
        load_prices(bad)
