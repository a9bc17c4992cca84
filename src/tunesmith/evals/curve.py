"""The learning curve: how much data the task takes, and whether more would help.

Nested subsets of the training examples (one shuffle, then its first 12.5%, 25%, 50%: each set
holds the smaller ones, so a rise comes from the added examples, not from a different draw) are
trained with the same settings and seed, and scored on the same held-out examples as every
strategy. The verdict reads the last doubling: the paired per-example difference between the
full model and the half model, with a bootstrap interval, in points per doubling.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tunesmith.data.checks import MIN_TRAINING_EXAMPLES
from tunesmith.evals.metrics import paired_difference

FRACTIONS = (0.125, 0.25, 0.5)  # and 1.0: the full model, trained or given
# A last doubling whose whole interval lies below this many points is "flat".
FLAT_POINTS = 2.0


def subset_sizes(n_examples: int, fractions: tuple[float, ...] = FRACTIONS) -> list[int]:
    """The smaller training sets' sizes, smallest first: each fraction rounded, those below
    training's minimum (OpenAI's 10) dropped, each size once, the full set excluded."""
    sizes = {round(n_examples * f) for f in fractions}
    return sorted(s for s in sizes if MIN_TRAINING_EXAMPLES <= s < n_examples)


def nested_order(n_examples: int, seed: int) -> list[int]:
    """One shuffle of the training examples; a subset of size k is its first k."""
    order = list(range(n_examples))
    random.Random(seed).shuffle(order)
    return order


def write_subset(records: list, order: list[int], size: int, folder: Path) -> Path:
    """The first `size` examples of the shuffle as OpenAI chat JSONL, in the file's own order
    (training shuffles again with the run's seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"train-{size}.jsonl"
    chosen = sorted(order[:size])
    lines = [json.dumps(records[i].to_openai(), ensure_ascii=False) for i in chosen]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Point:
    examples: int
    model: str
    metric: dict  # MetricResult.to_dict()
    training: (
        dict | None
    )  # job, seconds, trained tokens, cost; None for a model given untrained here
    given: bool = False  # the full point is the model the user passed, not trained for the curve


@dataclass
class Slope:
    """Quality gained by the last doubling of the data, in points (percentage points)."""

    points: float
    low: float
    high: float
    from_examples: int
    to_examples: int


def slope(points: list[Point], seed: int = 0) -> Slope | None:
    """The last doubling of a curve (its two largest points), None with fewer than two: the
    paired per-example difference on the same held-out examples, scaled to one doubling (the
    half set is rarely exactly half of the full one)."""
    if len(points) < 2:
        return None
    half, full = points[-2], points[-1]
    mean, low, high = paired_difference(full.metric["scores"], half.metric["scores"], seed)
    per = math.log2(full.examples / half.examples)
    return Slope(
        points=mean * 100 / per,
        low=low * 100 / per,
        high=high * 100 / per,
        from_examples=half.examples,
        to_examples=full.examples,
    )


def verdict(s: Slope | None, n_test: int) -> str:
    """The curve's answer to "would more data help?", in words backed by its numbers."""
    if s is None:
        return (
            "no curve: too few training examples for a smaller subset "
            f"(each needs at least {MIN_TRAINING_EXAMPLES})"
        )
    figure = f"{s.points:+.0f} points per doubling [{s.low:+.0f}, {s.high:+.0f}]"
    span = f"from {s.from_examples} to {s.to_examples} examples"
    if s.low > 0:
        return f"more data likely helps: {figure} {span}"
    if s.high < FLAT_POINTS:
        return f"flat: more data is unlikely to help ({figure} {span})"
    return f"unclear: {figure} {span}; the interval spans both a gain and none" + (
        f" ({n_test} test examples: get more held-out data to tell)" if n_test < 100 else ""
    )


def curve_dict(points: list[Point], n_test: int, seed: int = 0) -> dict:
    s = slope(points, seed)
    return {
        "points": [asdict(p) for p in points],
        "slope": asdict(s) if s else None,
        "verdict": verdict(s, n_test),
    }
