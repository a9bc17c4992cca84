"""From measurements to a decision: costs, break-even, and a recommendation by stated rules.

The rules (also in the README):
1. Every row (each prompting strategy, each fine-tuned model) is ranked by quality, a tie going
   to fewer prompt tokens, then to the order measured. F is the top-ranked fine-tuned model and P
   the top-ranked prompting strategy. F and P are compared by the 95% bootstrap interval of
   their paired difference, example by example on the same held-out set (when both carry their
   per-example scores; else by their two intervals, entirely above or below). The burden of proof
   is on fine-tuning, which costs data, training and a model to keep.
2. The whole interval of F's gain above zero: fine-tune, with F. Said with the gain in points,
   the prompt tokens saved, and the requests after which training has paid for itself.
3. No part of it above zero (F is never ahead): do not fine-tune; P is at least as good and costs
   no training. (Read by marginal intervals, a 25-point loss on 20 examples "overlapped" and the
   verdict said either; the drone task in docs/real-tasks.md.)
4. An interval spanning zero: do not fine-tune when P costs no more per request than F ("within
   the interval at no training cost"); when F is cheaper per request, either works, and
   fine-tuning pays back after the break-even number of requests.
5. If F loses 10 points or more on the general-ability probes, the verdict carries that cost.
6. With several fine-tuned models the verdict names F and its lead over the runner-up; when their
   intervals overlap it says so (the data do not settle which is better), and says when the
   runner-up cost less to train.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from tunesmith.errors import TunesmithError
from tunesmith.evals.strategies import is_tuned

FORGETTING_POINTS = 10.0


@dataclass
class Prices:
    """Per-token prices (per million tokens, as price lists are written)."""

    currency: str = "USD"
    base_input: float = 0.0
    base_output: float = 0.0
    tuned_input: float = 0.0
    tuned_output: float = 0.0
    training: float = 0.0

    def request(self, tuned: bool, prompt_tokens: float, completion_tokens: float) -> float:
        price_in, price_out = (
            (self.tuned_input, self.tuned_output) if tuned else (self.base_input, self.base_output)
        )
        return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6


PRICES_EXAMPLE = """currency: USD
base: {input: 0.15, output: 0.60}        # per 1M tokens, prompting the base model
fine-tuned: {input: 0.30, output: 1.20}  # per 1M tokens, calling the fine-tuned model
training: 3.00                           # per 1M trained tokens"""


def load_prices(path: Path) -> Prices:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        return Prices(
            currency=str(data.get("currency", "USD")),
            base_input=float(data["base"]["input"]),
            base_output=float(data["base"]["output"]),
            tuned_input=float(data["fine-tuned"]["input"]),
            tuned_output=float(data["fine-tuned"]["output"]),
            training=float(data.get("training", 0.0)),
        )
    except FileNotFoundError:
        raise TunesmithError(f"Prices file {path} does not exist.", param="prices") from None
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise TunesmithError(
            f"{path}: cannot read prices ({type(exc).__name__}: {exc}).",
            f"Write it like this:\n{PRICES_EXAMPLE}",
            param="prices",
        ) from None


@dataclass
class Row:
    """One strategy (or one fine-tuned model) as the decision sees it."""

    name: str  # a strategy, or a fine-tuned model's label (`strategies.tuned_labels`)
    quality: float
    low: float
    high: float
    prompt_tokens: float
    cost_per_request: float  # in the report's unit: currency, or machine seconds
    model: str = ""
    training_cost: float | None = None  # fine-tuned rows: what training cost, when known
    forgetting: float | None = None  # fine-tuned rows: probe points lost against the base
    scores: list[float] | None = field(default=None, repr=False)  # per held-out example

    @property
    def tuned(self) -> bool:
        return is_tuned(self.name)


def rank(rows: list[Row]) -> list[Row]:
    """Best first: higher quality, then fewer prompt tokens, then the order measured (rule 1)."""
    return sorted(rows, key=lambda r: (-round(r.quality, 6), r.prompt_tokens))


def break_even(training_cost: float | None, prompting: float, tuned: float) -> int | None:
    """Requests after which training plus tuned calls cost less than prompting calls."""
    if training_cost is None or tuned >= prompting:
        return None
    # round first: 100 / (0.7 - 0.2) is 200.00000000000003 in floating point
    return max(1, math.ceil(round(training_cost / (prompting - tuned), 6)))


@dataclass
class Recommendation:
    verdict: str  # "fine-tune", "do not fine-tune", "either"
    headline: str
    answers: dict[str, str] = field(
        default_factory=dict
    )  # the seed's questions: quality, cost, reuse
    break_even: int | None = None
    compared_with: str | None = None  # P, the best prompting strategy
    fine_tuned: str | None = None  # F, the best fine-tuned row
    model: str | None = None  # the model the verdict says to use: F's, or P's base model
    ranking: list[str] = field(default_factory=list)  # every row's name, best first

    def to_dict(self) -> dict:
        return asdict(self)


def gain_interval(tuned: Row, prompting: Row, seed: int = 0) -> tuple[float, float]:
    """The 95% interval of F's gain over P: paired on the same examples when both rows carry
    their scores, else the two marginal intervals' widest difference (older callers)."""
    if tuned.scores is not None and prompting.scores is not None:
        from tunesmith.evals.metrics import paired_difference

        return paired_difference(tuned.scores, prompting.scores, seed)[1:]
    # Entirely above (or below) exactly when the marginal intervals do not overlap.
    return tuned.low - prompting.high, tuned.high - prompting.low


def _points(x: float) -> str:
    return f"{x * 100:+.0f} points"


def recommend(
    rows: list[Row],
    training_cost: float | None = None,
    unit: str = "machine-seconds",
    forgetting: float | None = None,
) -> Recommendation:
    """Apply the rules above to the best fine-tuned row and the best prompting row.

    `training_cost` and `forgetting` stand in for a fine-tuned row that carries none (the
    single fine-tuned model of older callers); a row's own values win.
    """
    ranked = rank(rows)
    tuned_rows = [r for r in ranked if r.tuned]
    tuned = tuned_rows[0]
    best = next(r for r in ranked if not r.tuned)
    cost = tuned.training_cost if tuned.training_cost is not None else training_cost
    lost = tuned.forgetting if tuned.forgetting is not None else forgetting
    gain = tuned.quality - best.quality
    saved = 1 - tuned.prompt_tokens / best.prompt_tokens if best.prompt_tokens else 0.0
    even = break_even(cost, best.cost_per_request, tuned.cost_per_request)
    payback = (
        f"pays back after about {even:,} requests"
        if even
        else "never pays back on per-request cost"
    )
    named = f" with {tuned.model}" if tuned.model else ""
    low, high = gain_interval(tuned, best)
    if low > 0:
        verdict, use = "fine-tune", tuned
        headline = f"fine-tune{named}: {_points(gain)} over {best.name} at {saved:.0%} fewer prompt tokens; {payback}"
    elif high <= 0 and gain < 0:
        verdict, use = "do not fine-tune", best
        headline = (
            f"do not fine-tune: {best.name} scores {_points(-gain)[1:]} higher, at no training cost"
        )
    elif best.cost_per_request <= tuned.cost_per_request:
        verdict, use = "do not fine-tune", best
        headline = f"do not fine-tune: {best.name} is within the interval at no training cost"
    else:
        verdict, use = "either", tuned
        headline = (
            f"either: {best.name} is within the interval; fine-tuning{named} {payback}, "
            "so fine-tune if you expect more requests than that"
        )
    if lost is not None and lost * 100 >= FORGETTING_POINTS:
        headline += f" (it costs {lost * 100:.0f} points on the general-ability probes)"
    if len(tuned_rows) > 1:
        headline += "; " + _lead(tuned, tuned_rows[1])
    answers = {
        "quality": f"Best: {ranked[0].name}. Fine-tuned {tuned.quality:.0%} "
        f"[{tuned.low:.0%}, {tuned.high:.0%}] vs {best.name} {best.quality:.0%} [{best.low:.0%}, {best.high:.0%}].",
        "cost": f"Per request: fine-tuned {tuned.prompt_tokens:.0f} prompt tokens and {tuned.cost_per_request:.4g} "
        f"{unit}; {best.name} {best.prompt_tokens:.0f} prompt tokens and {best.cost_per_request:.4g} {unit}."
        + (f" Training cost once: {cost:.4g} {unit}." if cost is not None else ""),
        "reuse": (
            f"Fine-tuning {payback} compared with {best.name}."
            if cost is not None
            else "Training cost unknown (the fine-tuned model was not trained in this store)."
        ),
    }
    if len(tuned_rows) > 1:
        answers["ranking"] = "; ".join(
            f"{i}. {r.name}{f' ({r.model})' if r.tuned and r.model else ''} {r.quality:.0%} "
            f"[{r.low:.0%}, {r.high:.0%}]"
            for i, r in enumerate(ranked, start=1)
        )
    return Recommendation(
        verdict, headline, answers, even, best.name, tuned.name, use.model or None,
        [r.name for r in ranked],
    )  # fmt: skip


def _lead(first: Row, second: Row) -> str:
    """Rule 6: how far the best fine-tuned model is ahead of the next, and whether it is clear."""
    who = first.model or first.name
    other = second.model or second.name
    points = _points(first.quality - second.quality)
    if first.low > second.high:
        return f"{who} beats {other} by {points}"
    lead = f"{who} leads {other} by {points}, within the interval (these data do not settle it)"
    costs = (first.training_cost, second.training_cost)
    if None not in costs and costs[1] < costs[0]:
        lead += f"; {other} cost less to train"
    return lead
