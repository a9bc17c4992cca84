"""Templates: item and sample variables, nested paths and indices; a missing one is an error."""

from __future__ import annotations

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.graders.templates import TemplateError, check_template, render

ITEM = {"answer": "Paris", "meta": {"tags": ["geo", "eu"], "n": 3}}
SAMPLE = {
    "output_text": '{"city": "Paris"}',
    "output_json": {"city": "Paris", "score": 0.5},
    "output_tools": [{"type": "function", "function": {"name": "f"}}],
}


def test_variables_fill_with_text_or_json():
    assert (
        render("{{item.answer}} / {{ sample.output_json.city }}", ITEM, SAMPLE) == "Paris / Paris"
    )
    assert render("{{ item.meta.tags[1] }}", ITEM, SAMPLE) == "eu"
    assert render("{{ item.meta.n }} {{ sample.output_json.score }}", ITEM, SAMPLE) == "3 0.5"
    assert render("{{ item.meta.tags }}", ITEM, SAMPLE) == '["geo", "eu"]'
    assert render("{{ sample.output_tools[0].function.name }}", ITEM, SAMPLE) == "f"
    assert render("no variables", ITEM, SAMPLE) == "no variables"


def test_a_missing_variable_is_a_template_error():
    with pytest.raises(TemplateError) as info:
        render("{{ item.missing.deeper }}", ITEM, SAMPLE)
    assert "item.missing" in info.value.message and not info.value.sample_parse
    with pytest.raises(TemplateError):
        render("{{ item.meta.tags[5] }}", ITEM, SAMPLE)


def test_output_json_of_a_non_json_sample_is_a_sample_parse_error():
    with pytest.raises(TemplateError) as info:
        render("{{ sample.output_json.city }}", ITEM, {"output_text": "Paris", "output_json": None})
    assert info.value.sample_parse


def test_check_template_refuses_bad_paths_and_namespaces():
    check_template("{{ item.a.b[0] }} {{sample.output_text}}", "p")
    for bad in ("{{ answer }}", "{{ other.x }}", "{{ item..x }}", "{{ }}"):
        with pytest.raises(TunesmithError) as info:
            check_template(bad, "grader.input")
        assert info.value.param == "grader.input"
