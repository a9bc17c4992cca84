"""string_check and text_similarity: the graders that compare two texts, scored in [0, 1].

Everything runs offline: words come from a regular expression (nltk's punkt tokenizer would be
downloaded), and METEOR gets a WordNet with no entries (the corpus cannot be downloaded here).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from tunesmith.graders.spec import Metric, Operation

_WORD = re.compile(r"\w+|[^\w\s]")  # words and single punctuation marks, as BLEU's tokenizers do


def string_check(value: str, reference: str, operation: Operation) -> float:
    """1.0 when the check holds, else 0.0. Per OpenAI: eq/ne compare exactly (case matters);
    like is "contains" (case matters), ilike "contains" ignoring case."""
    if operation == "eq":
        return float(value == reference)
    if operation == "ne":
        return float(value != reference)
    if operation == "like":
        return float(reference in value)
    return float(reference.casefold() in value.casefold())


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation: the tokens BLEU, GLEU and METEOR compare."""
    return _WORD.findall(text.lower())


def similarity(value: str, reference: str, metric: Metric) -> float:
    """How close `value` is to `reference` by `metric`, in [0, 1] (1.0: the same text)."""
    if value == reference:
        # The same text is the best answer there is. Left alone, METEOR's fragmentation penalty
        # gives "yes" against "yes" 0.5, and ROUGE-2..5 give 0 to texts shorter than n words.
        return 1.0
    score = _METRICS[metric](value, reference)
    return min(1.0, max(0.0, float(score)))


def _fuzzy(value: str, reference: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.ratio(value, reference) / 100.0  # normalized Indel similarity, 0..100


def _bleu(value: str, reference: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hyp, ref = words(value), words(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    # auto_reweigh: a 2-word answer is judged on 1- and 2-grams, not zeroed by missing 4-grams;
    # method1 smoothing keeps one absent n-gram order from zeroing the whole score.
    return sentence_bleu(
        [ref], hyp, smoothing_function=SmoothingFunction().method1, auto_reweigh=True
    )


def _gleu(value: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    hyp, ref = words(value), words(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    return sentence_gleu([ref], hyp)


class _NoWordNet:
    """A WordNet with no synsets. nltk's meteor_score reads synonyms from the WordNet corpus,
    which would be downloaded (no network here); with this stand-in METEOR matches exact words
    and Porter stems only, its first two stages."""

    def synsets(self, *args, **kwargs) -> list:
        return []


def _meteor(value: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    hyp, ref = words(value), words(reference)
    if not hyp or not ref:
        return float(hyp == ref)
    return meteor_score([ref], hyp, wordnet=_NoWordNet())  # type: ignore[arg-type]


@lru_cache(maxsize=8)
def _rouge_scorer(kind: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=False)


def _rouge(kind: str) -> Callable[[str, str], float]:
    def score(value: str, reference: str) -> float:
        # rouge-score tokenizes with its own regular expression (lower-cased, no nltk data).
        return _rouge_scorer(kind).score(reference, value)[kind].fmeasure

    return score


def _cosine(value: str, reference: str) -> float:
    from tunesmith.models.embedding import embed

    vectors = embed([value, reference])  # [2, dim], unit rows
    # Cosine is in [-1, 1]; opposite meanings are as wrong as unrelated ones, so below 0 is 0.
    return float(vectors[0] @ vectors[1])


_METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": _fuzzy,
    "bleu": _bleu,
    "gleu": _gleu,
    "meteor": _meteor,
    "cosine": _cosine,
    **{f"rouge_{n}": _rouge(f"rouge{n}") for n in range(1, 6)},
    "rouge_l": _rouge("rougeL"),
}
