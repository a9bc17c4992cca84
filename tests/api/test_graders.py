"""/v1/fine_tuning/alpha/graders through the official SDK: run's response has exactly the SDK's
GraderRunResponse shape, validate returns the grader, and a bad grader is a 400 with a param."""

from __future__ import annotations

import openai
import pytest
from openai.types.fine_tuning.alpha import GraderRunResponse, GraderValidateResponse

CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_json.city }}",
    "reference": "{{ item.city }}",
    "operation": "ilike",
}
PYTHON = {
    "type": "python",
    "name": "short",
    "source": "def grade(sample, item):\n    return 1.0 if len(sample['output_text']) < 40 else 0.0\n",
}


def aliases(model: type) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_run_returns_the_sdks_shape(sdk: openai.OpenAI):
    grader = {
        "type": "multi",
        "name": "both",
        "graders": {"exact": CHECK, "short": PYTHON},
        "calculate_output": "(exact + short) / 2",
    }
    raw = sdk.fine_tuning.alpha.graders.with_raw_response.run(
        grader=grader, model_sample='{"city": "oslo"}', item={"city": "Oslo"}
    )
    body = raw.http_response.json()
    response = raw.parse()
    assert isinstance(response, GraderRunResponse)
    assert set(body) == aliases(GraderRunResponse)
    assert set(body["metadata"]) == aliases(type(response.metadata))
    assert set(body["metadata"]["errors"]) == aliases(type(response.metadata.errors))
    assert response.reward == 1.0 and response.sub_rewards == {"exact": 1.0, "short": 1.0}
    assert response.metadata.name == "both" and response.metadata.type == "multi"
    assert response.metadata.errors.python_grader_runtime_error is False
    assert response.metadata.execution_time > 0


def test_run_reports_a_failing_python_grader_in_the_flags(sdk: openai.OpenAI):
    broken = {**PYTHON, "source": "def grade(sample, item):\n    return 'abc'\n"}
    response = sdk.fine_tuning.alpha.graders.run(grader=broken, model_sample="x")
    assert response.reward == 0.0
    assert response.metadata.errors.python_grader_runtime_error
    assert "str" in response.metadata.errors.python_grader_runtime_error_details


def test_run_reports_a_missing_variable(sdk: openai.OpenAI):
    response = sdk.fine_tuning.alpha.graders.run(
        grader=CHECK, model_sample='{"city": "Oslo"}', item={"town": "Oslo"}
    )
    assert response.reward == 0.0 and response.metadata.errors.invalid_variable_error


def test_validate_returns_the_grader(sdk: openai.OpenAI):
    response = sdk.fine_tuning.alpha.graders.validate(grader=CHECK)
    assert isinstance(response, GraderValidateResponse)
    assert response.grader is not None and response.grader.to_dict() == CHECK


@pytest.mark.parametrize("call", ["run", "validate"])
def test_a_bad_grader_is_a_400_with_a_param(sdk: openai.OpenAI, call: str):
    grader = {
        "type": "multi",
        "name": "m",
        "graders": {"a": CHECK, "b": {**CHECK, "operation": "contains"}},
        "calculate_output": "a + b",
    }
    kwargs = {"model_sample": "x"} if call == "run" else {}
    with pytest.raises(openai.BadRequestError) as info:
        getattr(sdk.fine_tuning.alpha.graders, call)(grader=grader, **kwargs)
    assert info.value.status_code == 400
    assert info.value.param == "grader.graders.b.operation"
    assert "eq, ne, like, ilike" in info.value.message


def test_an_unknown_judge_model_is_a_404_naming_the_field(sdk: openai.OpenAI):
    """As for chat with an unknown model (the store's not-found error), with the grader's field."""
    grader = {
        "type": "score_model",
        "name": "s",
        "model": "no-such-model",
        "input": [{"role": "user", "content": "{{ sample.output_text }}"}],
    }
    with pytest.raises(openai.NotFoundError) as info:
        sdk.fine_tuning.alpha.graders.validate(grader=grader)
    assert info.value.param == "grader.model" and "no-such-model" in info.value.message


@pytest.mark.slow
def test_a_label_model_judged_by_the_served_model(sdk: openai.OpenAI):
    grader = {
        "type": "label_model",
        "name": "color",
        "model": "smollm2-135m-instruct",
        "labels": ["yes", "no"],
        "passing_labels": ["yes"],
        "input": [{"role": "user", "content": "Is '{{ sample.output_text }}' a color?"}],
    }
    response = sdk.fine_tuning.alpha.graders.run(grader=grader, model_sample="blue")
    assert response.reward in (0.0, 1.0)
    assert not response.metadata.errors.api_model_grader_parse_error
    assert response.metadata.token_usage and response.metadata.token_usage > 0
    usage = response.api_model_grader_token_usage_per_model["smollm2-135m-instruct"]
    assert usage["total_tokens"] == response.metadata.token_usage
