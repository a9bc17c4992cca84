"""The learning curve: nested subsets, the last doubling's slope and its verdict, and a real
comparison that trains the subsets with the full model's settings."""

from __future__ import annotations

import json

import pytest

from tunesmith.data.readers import read
from tunesmith.evals import curve as cv
from tunesmith.evals.compare import CompareConfig, run_comparison
from tunesmith.evals.report import write_report
from tunesmith.infer.engine import Engine
from tunesmith.jobs.service import run_claimed, submit_here
from tunesmith.store import open_store
from tunesmith.store.lifecycle import Runner
from tunesmith.train.config import SFTConfig


def point(examples: int, scores: list[float]) -> cv.Point:
    return cv.Point(examples, f"ft:m:{examples}", {"scores": scores}, None)


def test_subset_sizes_drop_sets_too_small_to_train_on_and_the_full_set():
    assert cv.subset_sizes(300) == [38, 75, 150]
    assert cv.subset_sizes(40) == [10, 20]  # 12.5% of 40 is 5: below the minimum of 10
    assert cv.subset_sizes(15) == []  # 25% and 50% are 4 and 8
    assert cv.subset_sizes(20) == [10]


def test_each_subset_holds_every_smaller_one(orders, tmp_path):
    records = read(orders / "train.jsonl").records
    order = cv.nested_order(len(records), seed=7)
    files = [cv.write_subset(records, order, n, tmp_path) for n in cv.subset_sizes(len(records))]
    sets = [set(path.read_text().splitlines()) for path in files]
    assert [len(s) for s in sets] == [38, 75, 150]
    assert sets[0] < sets[1] < sets[2]
    original = [json.dumps(r.to_openai(), ensure_ascii=False) for r in records]
    lines = files[1].read_text().splitlines()
    assert lines == [line for line in original if line in sets[1]]  # the file's own order
    assert cv.nested_order(len(records), seed=7) == order != cv.nested_order(len(records), seed=8)


def test_the_slope_is_the_paired_gain_per_doubling():
    rising = cv.slope(
        [point(10, [0.0] * 8), point(20, [0, 0, 0, 0, 1, 1, 1, 1]), point(40, [1.0] * 8)]
    )
    assert rising.points == pytest.approx(50) and (rising.from_examples, rising.to_examples) == (
        20,
        40,
    )
    assert rising.low > 0
    assert "more data likely helps: +50 points per doubling" in cv.verdict(rising, 8)
    # A half set that is not exactly half: 30 → 120 is two doublings, so half the gain per one.
    two = cv.slope([point(30, [0.0] * 4), point(120, [1.0] * 4)])
    assert two.points == pytest.approx(50)


def test_flat_and_unclear_curves_say_so():
    flat = cv.slope([point(50, [1.0] * 50), point(100, [1.0] * 50)])
    assert flat.points == 0 and cv.verdict(flat, 50).startswith("flat: more data is unlikely")
    mixed = cv.slope([point(50, [0, 1] * 10), point(100, [1, 0] * 10)])
    words = cv.verdict(mixed, 20)
    assert words.startswith("unclear") and "20 test examples" in words
    assert cv.verdict(None, 20).startswith("no curve")
    assert cv.slope([point(50, [1.0])]) is None


def test_a_comparison_with_a_learning_curve_trains_nested_subsets_alike(
    tiny_model_dir, orders, tmp_path
):
    """The full model (1 epoch, batch 4) is given; the curve trains 10 and 20 of its 40
    examples with its settings, scores them on the same held-out set, and plots all three."""
    store = open_store()
    trained: list[SFTConfig] = []
    sizes: list[int] = []  # each run's examples, read while its file exists

    def train_here(cfg: SFTConfig) -> str:
        trained.append(cfg)
        sizes.append(len(read(cfg.data).records))
        job = submit_here(store, cfg).job
        job = run_claimed(store, job.id, Runner.here())
        assert job.status == "succeeded", job.error
        return job.fine_tuned_model

    train = tmp_path / "train.jsonl"
    train.write_text("".join((orders / "train.jsonl").read_text().splitlines(keepends=True)[:40]))
    test = tmp_path / "test.jsonl"
    test.write_text("".join((orders / "test.jsonl").read_text().splitlines(keepends=True)[:5]))
    full = train_here(
        SFTConfig(data=train, model=str(tiny_model_dir), epochs=1, batch_size=4, lora={"r": 4})
    )
    config = CompareConfig(
        train=train, test=test, model=str(tiny_model_dir), fine_tuned=full,
        learning_curve=True, max_tokens=8, probes=False,
    )  # fmt: skip
    engine = Engine(max_batch=8, merge_adapters=True)
    try:
        result = run_comparison(config, store, engine, train_now=train_here)
    finally:
        engine.close()

    curve = result.learning_curve
    assert [p["examples"] for p in curve["points"]] == [10, 20, 40]
    assert curve["points"][-1]["model"] == full and curve["points"][-1]["given"]
    assert [c.epochs for c in trained[1:]] == [1, 1] and {c.lora.r for c in trained} == {4}
    assert sizes == [40, 10, 20]
    tuned_row = next(s for s in result.strategies if s.name == "fine-tuned")
    assert (
        curve["points"][-1]["metric"]["mean"] == tuned_row.metric["mean"]
    )  # reused, not retrained
    for p in curve["points"]:
        assert len(p["metric"]["scores"]) == 5
        assert p["training"]["seconds"] >= 0 and p["training"]["trained_tokens"] > 0
    assert curve["slope"]["from_examples"] == 20 and curve["verdict"]
    assert not list(store.settings.root.glob(".curve-*"))  # the subset files are cleaned up

    assert result.n_train == 40 and "40 training examples" in result.questions["costs"]
    assert result.questions["evidence"].startswith("5 test examples")
    page = write_report(result, tmp_path / "report")["html"].read_text()
    assert "How much data?" in page and page.count("<svg") == 4
    assert "Before you fine-tune: the questions" in page
