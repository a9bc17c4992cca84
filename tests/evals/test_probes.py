"""The bundled forgetting probes: the file's shape, and that each probe's answer check works."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.evals.probes import Probe, load_probes, probe_score
from tunesmith.tasks import PROBES

PROBE_SET = load_probes()
UNRELATED = "I am not sure, but I think the answer might be purple elephants."


def test_file_parses_into_about_fifty_probes_with_unique_ids():
    lines = [json.loads(line) for line in PROBES.read_text().splitlines() if line.strip()]
    assert len(lines) == len(PROBE_SET)
    assert 45 <= len(PROBE_SET) <= 60
    ids = [p.id for p in PROBE_SET]
    assert len(set(ids)) == len(ids)


def test_every_category_has_at_least_three_probes():
    counts = Counter(p.category for p in PROBE_SET)
    assert len(counts) >= 5
    assert min(counts.values()) >= 3, counts


def test_probes_are_single_user_turns_with_lowercase_accepts():
    for probe in PROBE_SET:
        assert [m.role for m in probe.messages] == ["user"], probe.id
        assert probe.messages[0].content and probe.reference, probe.id
        assert all(a == a.lower() and a.strip() for a in probe.accept), probe.id


@pytest.mark.parametrize("probe", PROBE_SET, ids=lambda p: p.id)
def test_reference_is_accepted_and_an_unrelated_answer_is_not(probe: Probe):
    assert probe_score(probe.reference, probe) == 1.0
    assert probe_score(f"Sure! {probe.reference}.", probe) == 1.0
    assert probe_score(UNRELATED, probe) == 0.0
    assert probe_score("", probe) == 0.0


def test_accepted_phrases_match_whole_words_only():
    probe = Probe(
        id="t",
        category="arithmetic",
        messages=[{"role": "user", "content": "What is 2 plus 2?"}],
        reference="4",
        accept=["4", "Four"],
    )
    assert probe.accept == ["4", "four"]
    assert probe_score("2 + 2 = 4.", probe) == 1.0
    assert probe_score("FOUR", probe) == 1.0
    assert probe_score("14", probe) == 0.0
    assert probe_score("fourteen", probe) == 0.0
    assert probe_score(None, probe) == 0.0  # type: ignore[arg-type]


def test_a_bad_probe_file_names_the_line(tmp_path: Path):
    path = tmp_path / "probes.jsonl"
    good = PROBES.read_text().splitlines()[0]
    path.write_text(f"{good}\n\n{json.dumps({'id': 'x', 'accept': []})}\n")
    with pytest.raises(TunesmithError, match="line 3"):
        load_probes(path)
