"""From measurements to a decision: costs, break-even, and a recommendation by stated rules.

The rules (also in the README):
1. Let F be the fine-tuned model and P the best prompting strategy (highest quality; a tie goes
   to fewer prompt tokens). Quality is compared by 95% bootstrap intervals.
2. F's interval entirely above P's: fine-tune. Said with the gain in points, the prompt tokens
   saved, and the number of requests after which training has paid for itself.
3. P's interval entirely above F's: do not fine-tune; P is better and costs no training.
4. Overlapping intervals: do not fine-tune when P costs no more per request than F ("within the
   interval at no training cost"); when F is cheaper per request, either works, and fine-tuning
   pays back after the break-even number of requests.
5. If F loses 10 points or more on the general-ability probes, the verdict carries that cost.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from tunesmith.errors import TunesmithError

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
    """One strategy as the decision sees it."""

    name: str
    quality: float
    low: float
    high: float
    prompt_tokens: float
    cost_per_request: float  # in the report's unit: currency, or machine seconds


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
    compared_with: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _points(x: float) -> str:
    return f"{x * 100:+.0f} points"


def recommend(
    rows: list[Row],
    training_cost: float | None,
    unit: str,
    forgetting: float | None = None,
) -> Recommendation:
    """Apply the rules above to the fine-tuned row and the best prompting row."""
    tuned = next(r for r in rows if r.name == "fine-tuned")
    prompting = [r for r in rows if r.name != "fine-tuned"]
    best = max(prompting, key=lambda r: (round(r.quality, 6), -r.prompt_tokens))
    gain = tuned.quality - best.quality
    saved = 1 - tuned.prompt_tokens / best.prompt_tokens if best.prompt_tokens else 0.0
    even = break_even(training_cost, best.cost_per_request, tuned.cost_per_request)
    payback = (
        f"pays back after about {even:,} requests"
        if even
        else "never pays back on per-request cost"
    )
    if tuned.low > best.high:
        verdict = "fine-tune"
        headline = f"fine-tune: {_points(gain)} over {best.name} at {saved:.0%} fewer prompt tokens; {payback}"
    elif best.low > tuned.high:
        verdict = "do not fine-tune"
        headline = (
            f"do not fine-tune: {best.name} scores {_points(-gain)[1:]} higher, at no training cost"
        )
    elif best.cost_per_request <= tuned.cost_per_request:
        verdict = "do not fine-tune"
        headline = f"do not fine-tune: {best.name} is within the interval at no training cost"
    else:
        verdict = "either"
        headline = (
            f"either: {best.name} is within the interval; fine-tuning {payback}, "
            "so fine-tune if you expect more requests than that"
        )
    if forgetting is not None and forgetting * 100 >= FORGETTING_POINTS:
        headline += f" (it costs {forgetting * 100:.0f} points on the general-ability probes)"
    answers = {
        "quality": f"Best: {max(rows, key=lambda r: r.quality).name}. Fine-tuned {tuned.quality:.0%} "
        f"[{tuned.low:.0%}, {tuned.high:.0%}] vs {best.name} {best.quality:.0%} [{best.low:.0%}, {best.high:.0%}].",
        "cost": f"Per request: fine-tuned {tuned.prompt_tokens:.0f} prompt tokens and {tuned.cost_per_request:.4g} "
        f"{unit}; {best.name} {best.prompt_tokens:.0f} prompt tokens and {best.cost_per_request:.4g} {unit}."
        + (
            f" Training cost once: {training_cost:.4g} {unit}." if training_cost is not None else ""
        ),
        "reuse": (
            f"Fine-tuning {payback} compared with {best.name}."
            if training_cost is not None
            else "Training cost unknown (the fine-tuned model was not trained in this store)."
        ),
    }
    return Recommendation(verdict, headline, answers, even, best.name)
