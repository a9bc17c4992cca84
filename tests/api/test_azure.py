"""Azure OpenAI's fine-tuning tutorial, call for call, with the official `AzureOpenAI` client
against a live tunesmith server: files, a job with a seed, events, checkpoints, the management
plane's deployment PUT, chat through the deployment, and its deletion; the same through Azure's
v1 base URL; and Azure's errors."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

KEY = "sk-azure-test"
GA, PREVIEW = "2024-10-21", "2025-04-01-preview"
ACCOUNT = (
    "/subscriptions/0000-sub/resourceGroups/my-rg/providers/Microsoft.CognitiveServices"
    "/accounts/my-resource"
)


def lines(source: Path, target: Path, n: int) -> Path:
    target.write_text("".join(source.read_text().splitlines(keepends=True)[:n]))
    return target


def finished(sdk: openai.OpenAI, job_id: str, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise TimeoutError(job_id)


def deployment_url(root: str, name: str, version: str = "2024-10-01") -> str:
    return f"{root}{ACCOUNT}/deployments/{name}?api-version={version}"


def tutorial_body(model: str) -> dict:
    return {
        "sku": {"name": "standard", "capacity": 1},
        "properties": {"model": {"format": "OpenAI", "name": model, "version": "1"}},
    }


def train_small(sdk: openai.OpenAI, orders: Path, tmp_path: Path):
    """The tutorial's upload and job (seed 105), on a few examples of the bundled task."""
    train = sdk.files.create(
        file=lines(orders / "train.jsonl", tmp_path / "training_set.jsonl", 10), purpose="fine-tune"
    )
    valid = sdk.files.create(
        file=lines(orders / "validation.jsonl", tmp_path / "validation_set.jsonl", 4),
        purpose="fine-tune",
    )
    job = sdk.fine_tuning.jobs.create(
        training_file=train.id,
        validation_file=valid.id,
        model="smollm2-135m-instruct",
        seed=105,
        hyperparameters={"n_epochs": 1, "batch_size": 5},
    )
    assert job.seed == 105
    job = finished(sdk, job.id)
    assert job.status == "succeeded", job.error
    return job


@pytest.mark.slow
def test_the_azure_tutorial_flow_with_azure_openai(serve, orders, tmp_path) -> None:
    root = serve(workers=1, api_keys=[KEY]).removesuffix("/v1")
    azure = openai.AzureOpenAI(
        azure_endpoint=root, api_key=KEY, api_version=GA, max_retries=0, timeout=120
    )
    job = train_small(azure, orders, tmp_path)
    events = azure.fine_tuning.jobs.list_events(fine_tuning_job_id=job.id, limit=10).data
    assert events and events[0].message == "The job has successfully completed"
    checkpoints = azure.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and checkpoints[0].fine_tuned_model_checkpoint.startswith("ft:")
    assert job.fine_tuned_model in {m.id for m in azure.models.list().data}

    # The tutorial's deployment step: requests.put on the management URL, with a token.
    deploy = httpx.put(
        deployment_url(root, "gpt-ft-deployment"),
        json=tutorial_body(job.fine_tuned_model),
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert deploy.status_code == 201, deploy.text
    resource = deploy.json()
    assert resource["properties"]["provisioningState"] == "Succeeded"
    assert resource["id"] == f"{ACCOUNT}/deployments/gpt-ft-deployment"
    assert resource["properties"]["model"]["name"] == job.fine_tuned_model
    again = httpx.put(
        deployment_url(root, "gpt-ft-deployment"),
        json=tutorial_body(job.fine_tuned_model),
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert again.status_code == 200  # an update, not a second deployment
    listed = httpx.get(
        f"{root}{ACCOUNT}/deployments?api-version=2024-10-01", headers={"api-key": KEY}
    )
    assert [d["name"] for d in listed.json()["value"]] == ["gpt-ft-deployment"]

    answer = azure.chat.completions.create(
        model="gpt-ft-deployment",
        messages=[{"role": "user", "content": "2 large pizzas and a coke"}],
        max_tokens=8,
    )
    assert answer.choices[0].message.content
    assert answer.model == job.fine_tuned_model  # Azure names the model behind the deployment

    # The model cannot be deleted while the deployment calls it; the refusal names it.
    with pytest.raises(openai.BadRequestError) as refused:
        azure.models.delete(job.fine_tuned_model)
    assert "gpt-ft-deployment" in refused.value.message

    gone = httpx.delete(deployment_url(root, "gpt-ft-deployment"), headers={"api-key": KEY})
    assert gone.status_code == 200
    with pytest.raises(openai.NotFoundError) as missing:
        azure.chat.completions.create(
            model="gpt-ft-deployment", messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.code == "DeploymentNotFound"
    azure.close()


@pytest.mark.slow
def test_the_same_flow_through_azure_v1_base_url(serve, orders, tmp_path) -> None:
    root = serve(workers=1, api_keys=[KEY]).removesuffix("/v1")
    v1 = openai.OpenAI(base_url=f"{root}/openai/v1/", api_key=KEY, max_retries=0, timeout=120)
    job = train_small(v1, orders, tmp_path)
    assert v1.fine_tuning.jobs.list_events(job.id).data
    assert v1.fine_tuning.jobs.checkpoints.list(job.id).data
    deploy = httpx.put(
        deployment_url(root, "v1-deployment", version="2025-06-01"),
        json=tutorial_body(job.fine_tuned_model),
        headers={"api-key": KEY},
    )
    assert deploy.status_code == 201
    # Azure's v1 API takes the deployment's name as `model`.
    answer = v1.chat.completions.create(
        model="v1-deployment", messages=[{"role": "user", "content": "a salad"}], max_tokens=6
    )
    assert answer.choices[0].message.content
    text = v1.completions.create(model="v1-deployment", prompt="Order:", max_tokens=4)
    assert text.choices[0].text is not None
    assert (
        httpx.delete(deployment_url(root, "v1-deployment"), headers={"api-key": KEY}).status_code
        == 200
    )
    assert (
        httpx.get(deployment_url(root, "v1-deployment"), headers={"api-key": KEY}).status_code
        == 404
    )
    v1.close()


@pytest.fixture
def azure_root(serve) -> str:
    return serve(api_keys=[KEY]).removesuffix("/v1")


def test_the_api_versions_the_sdk_sends_are_accepted(azure_root) -> None:
    for version in (GA, PREVIEW, "2026-10-01-preview"):
        client = openai.AzureOpenAI(
            azure_endpoint=azure_root, api_key=KEY, api_version=version, max_retries=0
        )
        assert "smollm2-135m-instruct" in {m.id for m in client.models.list().data}
        client.close()


def test_a_wrong_or_missing_api_key_gets_azures_401(azure_root) -> None:
    for headers in ({"api-key": "sk-wrong"}, {}):
        response = httpx.get(f"{azure_root}/openai/models?api-version={GA}", headers=headers)
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == "401" and error["message"].startswith("Access denied")
    wrong = openai.AzureOpenAI(
        azure_endpoint=azure_root, api_key="sk-wrong", api_version=GA, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    wrong.close()
    # The same keys open the OpenAI routes through `api-key`, and Azure's through Bearer.
    assert httpx.get(f"{azure_root}/v1/models", headers={"api-key": KEY}).status_code == 200
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert (
        httpx.get(f"{azure_root}/openai/models?api-version={GA}", headers=bearer).status_code == 200
    )


def test_an_unknown_deployment_is_deployment_not_found(azure_root) -> None:
    azure = openai.AzureOpenAI(
        azure_endpoint=azure_root, api_key=KEY, api_version=GA, max_retries=0
    )
    with pytest.raises(openai.NotFoundError) as missing:
        azure.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "DeploymentNotFound"
    with pytest.raises(openai.NotFoundError):
        azure.completions.create(model="nope", prompt="hi")
    azure.close()


def test_a_missing_or_malformed_api_version_gets_azures_error(azure_root) -> None:
    key = {"api-key": KEY}
    missing = httpx.get(f"{azure_root}/openai/models", headers=key)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "404"
    assert missing.json()["error"]["message"].startswith("Resource not found")
    for bad in ("yesterday", "2021-01-01", "2024-13"):
        malformed = httpx.get(f"{azure_root}/openai/models?api-version={bad}", headers=key)
        assert malformed.status_code == 400
        assert malformed.json()["error"]["code"] == "BadRequest"
    # The management plane's own words for it.
    arm = httpx.get(f"{azure_root}{ACCOUNT}/deployments", headers=key)
    assert arm.status_code == 400 and arm.json()["error"]["code"] == "MissingApiVersionParameter"


def test_the_management_plane_refuses_what_it_cannot_deploy(azure_root) -> None:
    key = {"api-key": KEY}
    unknown = httpx.put(
        deployment_url(azure_root, "d1"), json=tutorial_body("no-such"), headers=key
    )
    assert unknown.status_code == 404 and "no-such" in unknown.json()["error"]["message"]
    bad_name = httpx.put(
        deployment_url(azure_root, "a b"), json=tutorial_body("smollm2-135m-instruct"), headers=key
    )
    assert bad_name.status_code == 400 and bad_name.json()["error"]["code"] == "InvalidResourceName"
    no_model = httpx.put(deployment_url(azure_root, "d2"), json={"sku": {}}, headers=key)
    assert no_model.status_code == 400 and no_model.json()["error"]["param"] == "properties"
    no_key = httpx.put(
        deployment_url(azure_root, "d3"), json=tutorial_body("smollm2-135m-instruct")
    )
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "AuthenticationFailed"
    assert httpx.delete(deployment_url(azure_root, "never-made"), headers=key).status_code == 204


def test_a_deployment_survives_a_restart_and_the_cli_sees_it(serve, tunesmith_home) -> None:
    from typer.testing import CliRunner

    from tunesmith.cli import app

    root = serve(api_keys=[KEY]).removesuffix("/v1")
    made = httpx.put(
        deployment_url(root, "base"),
        json=tutorial_body("smollm2-135m-instruct"),
        headers={"api-key": KEY},
    )
    assert made.status_code == 201
    runner = CliRunner()
    listed = runner.invoke(app, ["deployments", "list"])
    assert (
        listed.exit_code == 0
        and "base" in listed.output
        and "smollm2-135m-instruct" in listed.output
    )
    assert (
        runner.invoke(app, ["deploy", "smollm2-135m-instruct", "--name", "cli-made"]).exit_code == 0
    )
    later = serve(api_keys=[KEY]).removesuffix("/v1")  # a second server on the same store
    names = httpx.get(
        f"{later}{ACCOUNT}/deployments?api-version=2024-10-01", headers={"api-key": KEY}
    )
    assert {d["name"] for d in names.json()["value"]} == {"base", "cli-made"}
    assert runner.invoke(app, ["deployments", "delete", "cli-made"]).exit_code == 0
    assert runner.invoke(app, ["deployments", "delete", "cli-made"]).exit_code == 1
