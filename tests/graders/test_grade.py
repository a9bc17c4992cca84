"""grade and Grading: rewards, multi graders, OpenAI's error flags; failures are per sample."""

from __future__ import annotations

from tunesmith.graders.run import Grading, grade, make_sample
from tunesmith.graders.sandbox import Limits
from tunesmith.graders.spec import parse_grader

CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_json.city }}",
    "reference": "{{ item.city }}",
    "operation": "eq",
}
PYTHON = {
    "type": "python",
    "name": "length",
    "source": "def grade(sample, item):\n    return min(1.0, len(sample['output_text']) / 100)\n",
}
LIMITS = Limits(timeout_s=2.0)


def test_sample_gets_output_json_when_its_text_is_json():
    assert make_sample('{"city": "Oslo"}')["output_json"] == {"city": "Oslo"}
    assert make_sample("Oslo")["output_json"] is None


def test_multi_combines_sub_rewards():
    grader = parse_grader(
        {
            "type": "multi",
            "name": "both",
            "graders": {"exact": CHECK, "length": PYTHON},
            "calculate_output": "0.5 * exact + length",
        }
    )
    result = grade(grader, make_sample('{"city": "Oslo"}'), {"city": "Oslo"}, limits=LIMITS)
    assert result.sub_rewards == {"exact": 1.0, "length": 0.16}
    assert result.reward == 0.66 and not result.errors.any()
    assert result.scores["both"] == 0.66 and result.execution_time > 0


def test_missing_variables_and_unparsed_json_are_flagged():
    grader = parse_grader(CHECK)
    missing = grade(grader, make_sample('{"city": "Oslo"}'), {"town": "Oslo"})
    assert missing.reward == 0.0 and missing.errors.invalid_variable_error
    assert "item.city" in missing.reason
    unparsed = grade(grader, make_sample("Oslo"), {"city": "Oslo"})
    assert unparsed.errors.sample_parse_error and not unparsed.errors.invalid_variable_error


def test_formula_failure_is_other_error():
    grader = parse_grader(
        {"type": "multi", "name": "m", "graders": {"a": CHECK}, "calculate_output": "1 / a"}
    )
    result = grade(grader, make_sample('{"city": "Rome"}'), {"city": "Oslo"})
    assert result.reward == 0.0 and result.errors.other_error and "computed" in result.reason


def test_batch_reuses_one_worker_and_survives_bad_samples():
    source = (
        "def grade(sample, item):\n"
        "    if item['kind'] == 'hang':\n"
        "        while True:\n"
        "            pass\n"
        "    if item['kind'] == 'text':\n"
        "        return 'abc'\n"
        "    return 1.0\n"
    )
    grader = parse_grader({"type": "python", "name": "p", "source": source})
    kinds = ["ok", "ok", "hang", "ok", "text", "ok"]
    with Grading(grader, limits=LIMITS) as grading:
        results = [grading.grade(make_sample("x"), {"kind": k}) for k in kinds]
    assert [r.reward for r in results] == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert results[2].errors.unresponsive_reward_error and "timed out" in results[2].reason
    assert results[4].errors.python_grader_runtime_error
    assert "str" in results[4].errors.python_grader_runtime_error_details


def test_model_grader_without_a_judge_is_a_server_error_for_that_sample():
    grader = parse_grader(
        {
            "type": "label_model",
            "name": "l",
            "model": "m",
            "input": [{"role": "user", "content": "{{ sample.output_text }}"}],
            "labels": ["a", "b"],
            "passing_labels": ["a"],
        }
    )
    result = grade(grader, make_sample("x"))
    assert result.reward == 0.0 and result.errors.model_grader_server_error
