"""The lesson's questions before fine-tuning, answered in words from a comparison's numbers.

Use case, alternatives tried, costs, benefits and reuse: each answer quotes the figures it rests
on, and `evidence` says when there are too few held-out or training examples for the intervals
to settle anything.
"""

from __future__ import annotations

from tunesmith.evals.metrics import paired_difference
from tunesmith.evals.strategies import is_tuned

# What each metric counts, for the use-case answer.
METRIC_WORDS = {
    "exact": "exact match of the whole answer",
    "json-fields": "the share of JSON fields right",
    "set-f1": "F1 over the listed items",
    "rouge-l": "ROUGE-L overlap with the reference answer",
    "label-accuracy": "label accuracy",
    "tool-calls": "the right function called with the right arguments",
}
# What each prompting strategy puts in the prompt, for the alternatives answer.
SHOWN = {
    "few-shot": " ({} fixed examples in the prompt)",
    "rag": " ({} nearest examples retrieved)",
}
# Below these, the report warns that the evidence is thin.
THIN_TEST = 100
THIN_TRAIN = 50


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _ci(metric: dict) -> str:
    return f"{_pct(metric['mean'])} [{_pct(metric['ci'][0])}, {_pct(metric['ci'][1])}]"


def paired_gain(tuned: dict, prompting: dict, seed: int = 0) -> tuple[float, float, float]:
    """The fine-tuned row's gain over a prompting row (metric dicts) on the same examples."""
    return paired_difference(tuned["scores"], prompting["scores"], seed)


def answer_questions(data: dict, n_train: int) -> dict[str, str]:
    """`data` is a comparison's dict (`Comparison.to_dict()` before `questions` is set)."""
    rec = data["recommendation"]
    rows = {s["name"]: s for s in data["strategies"]}
    prompting = [s for s in data["strategies"] if not is_tuned(s["name"])]
    best, tuned = rows[rec["compared_with"]], rows[rec["fine_tuned"]]
    shots = data["config"].get("shots", 0)
    answers = {
        "use case": (
            f"{data['n']} held-out examples scored by "
            f"{METRIC_WORDS.get(data['metric'], data['metric'])} (metric {data['metric']})."
        ),
        "alternatives": "Tried: "
        + ", ".join(
            f"{s['name']}{SHOWN.get(s['name'], '').format(shots)} {_ci(s['metric'])}"
            for s in prompting
        )
        + f". The best prompting strategy is {best['name']}.",
        "costs": _costs(data, tuned, best, n_train),
        "benefits": _benefits(tuned, best, rec, data["config"].get("seed", 0)),
        "reuse": _reuse(data, tuned),
    }
    if thin := _evidence(data, n_train):
        answers["evidence"] = thin
    return answers


def _costs(data: dict, tuned: dict, best: dict, n_train: int) -> str:
    unit = data["unit"]
    training = tuned.get("training")
    trained = (
        f"training took {training['seconds']:.0f} s on this machine "
        f"({training['trained_tokens'] or 0:,} tokens"
        + (f", {training['cost']:.4g} {unit}" if training.get("cost") is not None else "")
        + ")"
        if training
        else "training cost unknown (the model was not trained in this store)"
    )
    return (
        f"{n_train} training examples; {trained}. Prompt tokens per request: "
        f"{tuned['name']} {tuned['prompt_tokens']:.0f}, {best['name']} {best['prompt_tokens']:.0f}."
    )


def _benefits(tuned: dict, best: dict, rec: dict, seed: int) -> str:
    gain, low, high = paired_gain(tuned["metric"], best["metric"], seed)
    saved = 1 - tuned["prompt_tokens"] / best["prompt_tokens"] if best["prompt_tokens"] else 0.0
    even = rec.get("break_even")
    return (
        f"{tuned['name']} vs {best['name']}: {gain * 100:+.0f} points "
        f"[{low * 100:+.0f}, {high * 100:+.0f}] (paired, same examples), "
        f"{saved:.0%} fewer prompt tokens per request; "
        + (f"break-even after about {even:,} requests." if even else "no break-even on cost.")
    )


def _reuse(data: dict, tuned: dict) -> str:
    probes = data.get("probes")
    if not probes:
        return "General-ability probes were not run (--no-probes)."
    base, after = probes["base"]["mean"], probes[tuned["name"]]["mean"]
    n = len(probes["base"]["outputs"])
    return (
        f"General-ability probes ({n} prompts): base {_pct(base)}, {tuned['name']} "
        f"{_pct(after)} ({(after - base) * 100:+.0f} points). The base model itself is unchanged: "
        "an adapter is served beside it, so the base stays available for other tasks."
    )


def _evidence(data: dict, n_train: int) -> str | None:
    notes = []
    if data["n"] < THIN_TEST:
        widths = [s["metric"]["ci"][1] - s["metric"]["ci"][0] for s in data["strategies"]]
        notes.append(
            f"{data['n']} test examples: intervals are wide (up to {max(widths) * 100:.0f} "
            "points), get more held-out data"
        )
    if n_train < THIN_TRAIN:
        notes.append(f"{n_train} training examples: 50 to 100 usually show a clearer gain")
    return "; ".join(notes) + "." if notes else None
