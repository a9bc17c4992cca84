"""Task metrics on model outputs. Malformed output (bad JSON, prose, nothing) scores as wrong."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tunesmith.data.render import TOOL_CALL_OPEN
from tunesmith.errors import TunesmithError
from tunesmith.infer.tools import parse_tool_calls

MetricName = Literal["exact", "json-fields", "set-f1", "rouge-l", "label-accuracy", "tool-calls"]
TOOL_CALLS = "tool-calls"

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)
# List markers ("- ", "• ", "1. ", "2) ") need the space after them, so "-5" and "1.5" stay whole.
_BULLET = re.compile(r"^(?:[-*•+]|\d+[.)])\s+")
# What says nothing about a short answer: quotes, markdown emphasis, brackets, end punctuation.
_LABEL_EDGES = re.compile(r"^[\s\"'`*_(\[“‘]+|[\s\"'`*_.,;:!?)\]”’]+$")
_LIST_ITEM_WORDS = 3  # longer comma-separated parts are likely clauses of a sentence, not items
_LABEL_WORDS = 4
_BOOTSTRAP_CELLS = 2_000_000  # resample indices drawn per block: bounds memory on big test sets


def normalize_text(text: str) -> str:
    return " ".join(text.strip().split())


def _text(value: object) -> str:
    """Model output as text: anything that is not a string (None, a number) counts as no answer."""
    return value if isinstance(value, str) else ""


def parse_json(text: str, *, strict: bool = False) -> Any | None:
    """The JSON value in a model's answer, or None.

    Strict: the whole answer (code fences aside) must be JSON. Lenient: the first `{…}` or `[…]`
    that parses, so a correct object wrapped in prose still gets per-field credit.
    """
    if not isinstance(text, str):
        return None
    body = _FENCE.sub("", text.strip())
    try:
        return json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        if strict:
            return None
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", body):
        try:
            value, _ = decoder.raw_decode(body, match.start())
            return value
        except (json.JSONDecodeError, RecursionError):
            continue
    return None


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: Python's `==` except that booleans only equal booleans (`true` is not `1`)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def exact_match(prediction: str, reference: str) -> bool:
    """Equal as JSON when the reference is JSON (key order and spacing ignored), else as text."""
    ref = parse_json(reference, strict=True)
    if ref is not None:
        return same_json(parse_json(prediction, strict=True), ref)
    return normalize_text(_text(prediction)) == normalize_text(_text(reference))


@dataclass
class FieldScore:
    correct: int
    total: int
    valid_json: bool

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def json_fields(prediction: str, reference: str) -> FieldScore:
    """Share of the reference object's fields that the answer got exactly right."""
    ref = parse_json(reference, strict=True)
    if not isinstance(ref, dict):
        raise ValueError("json_fields needs a JSON object as the reference answer")
    pred = parse_json(prediction)
    valid = parse_json(prediction, strict=True) is not None
    if not isinstance(pred, dict):
        return FieldScore(0, len(ref), valid)
    correct = sum(1 for key, value in ref.items() if key in pred and same_json(pred[key], value))
    return FieldScore(correct, len(ref), valid)


# Task metrics: (prediction, reference) -> score in [0, 1]. The prediction is model output and may
# be anything; the reference is the user's answer and is trusted to fit the metric.


def exact(prediction: str, reference: str) -> float:
    """1.0 when `exact_match`, else 0.0."""
    return 1.0 if exact_match(prediction, reference) else 0.0


def json_fields_score(prediction: str, reference: str) -> float:
    """`json_fields` as a score: the share of the reference object's fields the answer got right.

    An object wrapped in prose still earns its fields (the valid-JSON rate reports the wrapping);
    an answer with no parseable object scores 0. The reference must be a JSON object.
    """
    fields = json_fields(prediction, reference)
    if fields.total == 0:  # reference `{}`: nothing to get right but the empty object itself
        return exact(prediction, reference)
    return fields.accuracy


def normalize_label(text: str) -> str:
    """A short answer reduced to what matters: case, spacing, quotes and end punctuation dropped."""
    return _LABEL_EDGES.sub("", " ".join(_text(text).lower().split()))


def label_accuracy(prediction: str, reference: str) -> float:
    """1.0 when the labels match after `normalize_label` (`"Positive."` matches `positive`)."""
    return 1.0 if normalize_label(prediction) == normalize_label(reference) else 0.0


def list_items(text: str) -> list[str]:
    """The items of a list answer, normalised like labels, duplicates dropped, order kept.

    A JSON array (alone, or the first one in prose) gives its elements. Otherwise several lines
    are one item each (bullet or number markers dropped), and a single line splits on commas or
    semicolons ("red, green, and blue" gives three items).
    """
    text = _FENCE.sub("", _text(text).strip())
    value = parse_json(text)
    if isinstance(value, list):
        raw = [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in value]
    else:
        lines = [_BULLET.sub("", line.strip()) for line in text.splitlines() if line.strip()]
        if len(lines) == 1:
            lines = [re.sub(r"^(?:and|or)\s+", "", p.strip()) for p in re.split(r"[,;]", lines[0])]
        raw = lines
    items = (normalize_label(item) for item in raw)
    return list(dict.fromkeys(item for item in items if item))


def set_f1(prediction: str, reference: str) -> float:
    """F1 of the two answers' item sets (see `list_items`); two empty lists agree fully."""
    pred, ref = set(list_items(prediction)), set(list_items(reference))
    if not pred and not ref:
        return 1.0
    common = len(pred & ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def word_tokens(text: str) -> list[str]:
    """Lowercased word tokens; punctuation separates words and is dropped."""
    return re.findall(r"\w+", _text(text).lower())


def _lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence; O(len(a) * len(b)) time, O(len(b)) memory."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta 1) on `word_tokens`: LCS / length gives precision and recall.

    Two empty texts agree fully (1.0); one empty text scores 0.
    """
    pred, ref = word_tokens(prediction), word_tokens(reference)
    if not pred and not ref:
        return 1.0
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Call:
    """One function call: its name, and its arguments (None when they are not a JSON object)."""

    name: str
    arguments: dict | None


def _arguments(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def tool_calls_in(text: object) -> tuple[list[Call], int]:
    """The calls an answer makes, read as the engine's parser reads them (Hermes
    `<tool_call>{...}</tool_call>` blocks, or an answer that is one call object), and how many
    calls it tried to write: one per `<tool_call>` opened, or one for an answer that starts
    with `{` (so a call cut off or broken counts as tried and invalid)."""
    text = _text(text)
    _, found = parse_tool_calls(text)
    calls = [Call(c["function"]["name"], _arguments(c["function"]["arguments"])) for c in found]
    tried = text.count(TOOL_CALL_OPEN) or int(text.strip().startswith("{"))
    return calls, max(tried, len(calls))


def _agreeing(ref: Call, pred: Call) -> int:
    """Arguments of `ref` that `pred` gives the same JSON value."""
    mine, theirs = ref.arguments or {}, pred.arguments or {}
    return sum(1 for key, value in mine.items() if key in theirs and same_json(theirs[key], value))


def match_calls(predicted: list[Call], reference: list[Call]) -> list[tuple[Call, Call]]:
    """(reference, predicted) pairs, each call in at most one pair: only calls of the same name
    pair up; exact pairs first, then the most agreeing arguments, then the order written. With
    exact pairs first, a perfect matching is found whenever one exists."""
    candidates = sorted(
        (not same_json(r.arguments, p.arguments), -_agreeing(r, p), i, j)
        for i, r in enumerate(reference)
        for j, p in enumerate(predicted)
        if r.name == p.name
    )
    used_ref: set[int] = set()
    used_pred: set[int] = set()
    pairs = []
    for *_, i, j in candidates:
        if i not in used_ref and j not in used_pred:
            used_ref.add(i)
            used_pred.add(j)
            pairs.append((reference[i], predicted[j]))
    return pairs


@dataclass
class CallScore:
    """One answer's tool calls against the reference's."""

    exact: bool  # the same calls: names and arguments (order of calls and of arguments ignored)
    function: bool  # the same functions called, as a multiset (none expected and none made: True)
    agreed: int  # arguments given the reference's value, in paired calls
    predicted: int  # arguments in every call made
    expected: int  # arguments in every reference call
    exact_arguments: int  # reference calls paired with exactly their arguments
    calls_expected: int
    tried: bool  # the answer tried to write a call
    valid_json: bool  # every call it tried parses, arguments a JSON object


def call_score(prediction: object, reference: str) -> CallScore:
    predicted, tried = tool_calls_in(prediction)
    expected, _ = tool_calls_in(reference)
    pairs = match_calls(predicted, expected)
    exact_arguments = sum(1 for r, p in pairs if same_json(r.arguments, p.arguments))
    function = sorted(c.name for c in predicted) == sorted(c.name for c in expected)
    return CallScore(
        exact=function and exact_arguments == len(expected),
        function=function,
        agreed=sum(_agreeing(r, p) for r, p in pairs),
        predicted=sum(len(c.arguments or {}) for c in predicted),
        expected=sum(len(c.arguments or {}) for c in expected),
        exact_arguments=exact_arguments,
        calls_expected=len(expected),
        tried=tried > 0,
        valid_json=0 < tried == len(predicted) and all(c.arguments is not None for c in predicted),
    )


def tool_calls_score(prediction: str, reference: str) -> float:
    """1.0 when the answer makes exactly the reference's calls (see `call_score`), else 0.0; a
    reference with no call wants an answer with none."""
    return 1.0 if call_score(prediction, reference).exact else 0.0


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def tool_call_figures(
    predictions: Sequence[object], references: Sequence[str]
) -> dict[str, float | None]:
    """What the tool-call score sums up, over the test set: the right functions called (or
    rightly none), argument precision and recall (over every argument given and expected), the
    reference calls made with exactly their arguments, and the valid-JSON rate of the answers
    that tried to call. None where nothing was there to count."""
    calls = [call_score(p, r) for p, r in zip(predictions, references, strict=True)]
    tried = [c for c in calls if c.tried]
    return {
        "function": _share(sum(c.function for c in calls), len(calls)),
        "argument precision": _share(sum(c.agreed for c in calls), sum(c.predicted for c in calls)),
        "argument recall": _share(sum(c.agreed for c in calls), sum(c.expected for c in calls)),
        "arguments exact": _share(
            sum(c.exact_arguments for c in calls), sum(c.calls_expected for c in calls)
        ),
        "valid JSON": _share(sum(c.valid_json for c in tried), len(tried)),
    }


METRICS: dict[str, Callable[[str, str], float]] = {
    "exact": exact,
    "json-fields": json_fields_score,
    "set-f1": set_f1,
    "rouge-l": rouge_l,
    "label-accuracy": label_accuracy,
    TOOL_CALLS: tool_calls_score,
}
# Metrics whose score is itself an exact match: "exact" beside them would say the same again.
_EXACT_SCORES = {"exact", TOOL_CALLS}


def calls_tools(reference: str) -> bool:
    """A reference answer that calls a tool, as `data.render.tool_call_text` writes one (a bare
    JSON object with a "name" is an object answer, not a call)."""
    return TOOL_CALL_OPEN in reference and bool(tool_calls_in(reference)[0])


def _list_answers(references: list[str], parsed: list[Any]) -> bool:
    """Every reference a JSON array or short items (see `list_items`), half of them several."""
    several = 0
    for ref, value in zip(references, parsed, strict=True):
        if isinstance(value, list):
            several += 1
            continue
        if isinstance(value, dict):
            return False
        items = list_items(ref)
        if not items or any(len(item.split()) > _LIST_ITEM_WORDS for item in items):
            return False
        several += len(items) >= 2
    return several * 2 >= len(references)


def choose_metric(references: list[str]) -> str:
    """The metric "auto" picks from the reference answers, first rule that holds:

    0. some reference calls a tool (`calls_tools`) → "tool-calls" (answers without a call then
       score right only when the model calls nothing);
    1. every reference is a JSON object → "json-fields";
    2. every reference is a JSON array, or a list of short items (one per line, or separated by
       commas / semicolons, each at most 3 words), and at least half of them hold two items or
       more → "set-f1";
    3. every reference is a short label (at most 4 words after `normalize_label`) and there are
       few distinct labels: at most max(20, n / 2) → "label-accuracy";
    4. otherwise free text → "rouge-l".

    "exact" is never chosen; it is reported next to every metric anyway.
    """
    if not references:
        raise ValueError("choose_metric needs at least one reference answer")
    if any(calls_tools(r) for r in references):
        return TOOL_CALLS
    parsed = [parse_json(r, strict=True) for r in references]
    if all(isinstance(p, dict) for p in parsed):
        return "json-fields"
    if _list_answers(references, parsed):
        return "set-f1"
    labels = [normalize_label(r) for r in references]
    short = all(len(label.split()) <= _LABEL_WORDS for label in labels)
    if short and len(set(labels)) <= max(20, len(labels) / 2):
        return "label-accuracy"
    return "rouge-l"


def _mean(values: np.ndarray) -> float:
    """The mean, exactly the value when all values are equal (no rounding drift to leave the CI)."""
    low, high = float(values.min()), float(values.max())
    if low == high:
        return low
    return min(high, max(low, math.fsum(values.tolist()) / values.size))


def bootstrap_ci(
    values: Sequence[float], n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean: `n` resamples with replacement.

    Seeded, so the same values give the same interval. The interval always contains the sample
    mean and stays within the values' range (all values equal: zero width).
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if n < 1 or not 0 < level < 1:
        raise ValueError(f"bootstrap_ci needs n >= 1 and 0 < level < 1, got n={n}, level={level}")
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    block = max(1, _BOOTSTRAP_CELLS // data.size)
    for start in range(0, n, block):
        rows = min(block, n - start)
        picks = rng.integers(0, data.size, size=(rows, data.size))  # [rows, len(values)]
        means[start : start + rows] = data[picks].mean(axis=1)
    tail = (1 - level) / 2
    low, high = (float(q) for q in np.quantile(means, [tail, 1 - tail]))
    centre = _mean(data)
    # Percentile intervals of tiny skewed samples can miss the mean by a hair; widen to include it.
    return max(float(data.min()), min(low, centre)), min(float(data.max()), max(high, centre))


def paired_difference(
    a: Sequence[float], b: Sequence[float], seed: int = 0
) -> tuple[float, float, float]:
    """How much `a` beats `b` scored on the same examples: the mean per-example difference and
    its bootstrap interval (tighter than comparing two intervals: each example is its own
    control)."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    low, high = bootstrap_ci(diffs, seed=seed)
    return _mean(np.asarray(diffs, dtype=float)), low, high


@dataclass
class MetricResult:
    """One strategy's scores on a test set: per example, the mean and its 95% CI, for the task
    metric and for exact match (always reported); the valid-JSON rate for "json-fields" and
    "tool-calls"; `figures`, the metric's other test-set figures (tool calls: see
    `tool_call_figures`), shown beside it in the report."""

    metric: str
    n: int
    scores: list[float] = field(repr=False)
    mean: float
    ci: tuple[float, float]
    exact: list[float] = field(repr=False)
    exact_mean: float
    exact_ci: tuple[float, float]
    valid_json: float | None = None
    figures: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON types: lists for intervals."""
        return {
            "metric": self.metric,
            "n": self.n,
            "mean": self.mean,
            "ci": list(self.ci),
            "exact_mean": self.exact_mean,
            "exact_ci": list(self.exact_ci),
            "valid_json": self.valid_json,
            "figures": dict(self.figures),
            "scores": list(self.scores),
            "exact": list(self.exact),
        }


def _check_metric(metric: str, references: list[str]) -> None:
    """Refuse an unknown name (with a did-you-mean) or references the metric cannot read."""
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, [*METRICS, "auto"], n=1)
        raise TunesmithError(
            f"Unknown metric {metric!r}." + (f" Did you mean {close[0]!r}?" if close else ""),
            f"Choose one of: auto, {', '.join(METRICS)}.",
            param="metric",
        )
    if metric == "json-fields":
        for i, ref in enumerate(references, start=1):
            if not isinstance(parse_json(ref, strict=True), dict):
                raise TunesmithError(
                    f"The json-fields metric needs JSON-object answers; test answer {i} is not.",
                    "Use --metric auto to let tunesmith pick a metric that fits the answers.",
                    param="metric",
                )
    if metric == TOOL_CALLS and not any(calls_tools(r) for r in references):
        raise TunesmithError(
            "The tool-calls metric needs test answers that call tools; none of them does.",
            'Give test examples whose assistant answers have "tool_calls", or use --metric auto.',
            param="metric",
        )


def score_all(
    metric: str,
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> MetricResult:
    """Every prediction scored against its reference with `metric` ("auto" resolves through
    `choose_metric`), with exact match beside it and bootstrap CIs of both means."""
    references = list(references)
    if len(predictions) != len(references) or not references:
        raise ValueError(
            f"score_all needs as many predictions as references, and some: "
            f"{len(predictions)} vs {len(references)}"
        )
    if metric == "auto":
        metric = choose_metric(references)
    _check_metric(metric, references)
    pairs = list(zip(predictions, references, strict=True))
    scores = [METRICS[metric](p, r) for p, r in pairs]
    exacts = scores if metric in _EXACT_SCORES else [exact(p, r) for p, r in pairs]
    valid, figures = None, {}
    if metric == "json-fields":
        valid = sum(parse_json(p, strict=True) is not None for p, _ in pairs) / len(pairs)
    elif metric == TOOL_CALLS:
        figures = tool_call_figures(predictions, references)
        valid = figures.pop("valid JSON")  # it has its own field, as for json-fields
    return MetricResult(
        metric=metric,
        n=len(pairs),
        scores=scores,
        mean=_mean(np.asarray(scores, dtype=float)),
        ci=bootstrap_ci(scores, resamples, seed),
        exact=list(exacts),
        exact_mean=_mean(np.asarray(exacts, dtype=float)),
        exact_ci=bootstrap_ci(exacts, resamples, seed),
        valid_json=valid,
        figures=figures,
    )
