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


def several(sft: tuple, dpo: tuple, best: tuple = (0.60, 0.55, 0.65, 320, 0.7)) -> list[Row]:
    """Prompting rows, then two fine-tuned models: (quality, low, high, training cost)."""
    return [
        Row("zero-shot", 0.1, 0.05, 0.15, 80, 0.5, model="base"),
        Row("few-shot", *best, model="base"),
        Row("rag", 0.2, 0.1, 0.3, 300, 1.0, model="base"),
        Row("fine-tuned #1", *sft[:3], 80, 0.4, model="ft:b:o:sft:1", training_cost=sft[3]),
        Row("fine-tuned #2", *dpo[:3], 80, 0.4, model="ft:b:o:dpo:2", training_cost=dpo[3]),
    ]


def test_two_fine_tuned_models_are_ranked_and_the_better_one_named():
    rec = recommend(several((0.80, 0.76, 0.84, 100.0), (0.95, 0.92, 0.97, 180.0)), unit="s")
    assert rec.ranking == ["fine-tuned #2", "fine-tuned #1", "few-shot", "rag", "zero-shot"]
    assert (rec.verdict, rec.fine_tuned, rec.model) == (
        "fine-tune",
        "fine-tuned #2",
        "ft:b:o:dpo:2",
    )
    assert rec.headline.startswith("fine-tune with ft:b:o:dpo:2: +35 points over few-shot")
    assert rec.headline.endswith("; ft:b:o:dpo:2 beats ft:b:o:sft:1 by +15 points")
    assert rec.break_even == 600  # its own training cost: 180 / (0.7 - 0.4)
    assert rec.answers["ranking"].startswith("1. fine-tuned #2 (ft:b:o:dpo:2) 95% [92%, 97%]; 2.")


def test_order_given_does_not_decide_and_overlap_is_said():
    rec = recommend(several((0.95, 0.90, 0.98, 100.0), (0.93, 0.89, 0.97, 180.0)), unit="s")
    assert rec.fine_tuned == "fine-tuned #1" and rec.break_even == 334  # 100 / 0.3, rounded up
    assert rec.headline.endswith(
        "ft:b:o:sft:1 leads ft:b:o:dpo:2 by +2 points, within the interval (these data do not settle it)"
    )
    cheaper = recommend(several((0.95, 0.90, 0.98, 180.0), (0.93, 0.89, 0.97, 100.0)), unit="s")
    assert cheaper.headline.endswith("; ft:b:o:dpo:2 cost less to train")


def test_with_several_models_prompting_can_still_win():
    rec = recommend(
        several((0.3, 0.25, 0.34, 1.0), (0.4, 0.35, 0.45, 1.0), best=(0.8, 0.75, 0.85, 320, 0.7)),
        unit="s",
    )
    assert (rec.verdict, rec.model, rec.ranking[0]) == ("do not fine-tune", "base", "few-shot")
    assert rec.headline.startswith("do not fine-tune: few-shot scores 40 points higher")
    assert "ft:b:o:dpo:2 beats ft:b:o:sft:1 by +10 points" in rec.headline


def paired(name: str, scores: list[float], tokens: float, cost: float) -> Row:
    mean = sum(scores) / len(scores)
    return Row(name, mean, max(0.0, mean - 0.2), min(1.0, mean + 0.2), tokens, cost, scores=scores)


def test_a_paired_loss_is_a_loss_even_when_the_marginal_intervals_overlap():
    """The drone task's shape: prompting right on 6 of 20, fine-tuning on 1 of them; marginal
    intervals [10%, 50%] and [0%, 15%] overlap, but fine-tuning is never ahead on an example."""
    rag = [1.0] * 6 + [0.0] * 14
    tuned = [1.0] + [0.0] * 19
    rec = recommend(
        [paired("zero-shot", [0.0] * 20, 1600, 0.3), paired("rag", rag, 1650, 0.3),
         paired("fine-tuned", tuned, 1600, 0.2)],
        training_cost=10.0,
    )  # fmt: skip
    assert rec.verdict == "do not fine-tune" and "rag scores 25 points higher" in rec.headline


def test_a_paired_gain_is_a_gain_even_when_the_marginal_intervals_overlap():
    """Same examples, fine-tuning right wherever prompting is and on 5 more of 40."""
    few = [1.0] * 20 + [0.0] * 20
    tuned = [1.0] * 25 + [0.0] * 15
    rec = recommend(
        [paired("few-shot", few, 300, 0.5), paired("fine-tuned", tuned, 80, 0.2)], training_cost=1.0
    )
    assert rec.verdict == "fine-tune" and rec.headline.startswith("fine-tune: +12 points")


def test_a_paired_interval_across_zero_is_no_evidence_either_way():
    few = [1.0, 0.0] * 10
    tuned = [0.0, 1.0] * 10
    rec = recommend([paired("few-shot", few, 300, 0.5), paired("fine-tuned", tuned, 80, 0.2)], 1.0)
    assert rec.verdict == "either"
