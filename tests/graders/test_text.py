"""string_check and every text_similarity metric: identical texts score 1, unrelated ones low."""

from __future__ import annotations

from typing import get_args

import pytest

from tunesmith.graders.spec import Metric
from tunesmith.graders.text import similarity, string_check

METRICS = list(get_args(Metric))
REFERENCE = "The quick brown fox jumps over the lazy dog near the river bank"
UNRELATED = "Quarterly revenue grew after the merger closed"


def test_string_check_operations_follow_openai():
    assert string_check("Paris", "Paris", "eq") == 1.0
    assert string_check("paris", "Paris", "eq") == 0.0
    assert string_check("paris", "Paris", "ne") == 1.0
    assert string_check("The answer is Paris.", "Paris", "like") == 1.0
    assert string_check("The answer is paris.", "Paris", "like") == 0.0
    assert string_check("The answer is PARIS.", "paris", "ilike") == 1.0
    assert string_check("Lyon", "paris", "ilike") == 0.0


@pytest.mark.parametrize("metric", METRICS)
def test_identical_is_one_unrelated_is_low(metric):
    assert similarity(REFERENCE, REFERENCE, metric) == 1.0
    assert similarity("yes", "yes", metric) == 1.0  # shorter than any n-gram order
    unrelated = similarity(UNRELATED, REFERENCE, metric)
    assert 0.0 <= unrelated < 0.4, unrelated
    close = similarity(
        "The quick brown fox jumped over a lazy dog near the river", REFERENCE, metric
    )
    assert unrelated < close < 1.0


def test_known_values():
    # rapidfuzz's normalized Indel similarity: 5 insertions and deletions over 13 characters.
    assert similarity("kitten", "sitting", "fuzzy_match") == pytest.approx(1 - 5 / 13)
    # ROUGE-1 F: 2 of 3 words shared each way.
    assert similarity("a b c", "a b d", "rouge_1") == pytest.approx(2 / 3)
    # ROUGE-2 F: of the bigrams (a b), (b c) and (a b), (b d), one is shared.
    assert similarity("a b c", "a b d", "rouge_2") == pytest.approx(0.5)
    # ROUGE-L: the longest common subsequence "a c" is 2 of 3 words.
    assert similarity("a x c", "a c y", "rouge_l") == pytest.approx(2 / 3)
    # BLEU with 3 words reweighs to 1..3-grams: unigram 2/3, bigram 1/2, trigram 0 (smoothed).
    assert 0.0 < similarity("a b c", "a b d", "bleu") < 0.6
    # METEOR matches stems without WordNet: "jumps" and "jumping" share the stem "jump".
    assert similarity("dogs jumping", "dog jumps", "meteor") > 0.4
    assert similarity("", "", "bleu") == 1.0
    assert similarity("", "something", "gleu") == 0.0
