"""Models API through the official SDK, plus what every /v1 route shares: auth and the schema."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import openai
import pytest

from tunesmith.models.spec import ModelSpec
from tunesmith.store import open_store

BASE = "smollm2-135m-instruct"
FT = f"ft:{BASE}:local:demo:abcd1234"


@pytest.fixture
def store():
    """The store under the test's home, the one the test server uses."""
    store = open_store()
    yield store
    store.close()


def register(store, name: str, folder: Path, kind: str = "fine-tuned", job_id=None) -> None:
    spec = ModelSpec(name=name, kind=kind, base=BASE, weights=BASE, adapter=folder, created=123)
    store.models.register(spec, job_id)


def test_list_covers_the_catalog_and_registered_models(sdk, store, tmp_path):
    register(store, FT, tmp_path)
    models = sdk.models.list()
    ids = [m.id for m in models.data]
    assert ids[0] == BASE and FT in ids
    base = models.data[0]
    assert (base.object, isinstance(base.created, int), base.owned_by) == (
        "model",
        True,
        "tunesmith",
    )


def test_each_model_carries_its_origin_and_size_as_the_cli_lists_them(sdk, store, tmp_path):
    from tunesmith.models.listing import builtin_rows

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    register(store, FT, adapter, job_id="ftjob-abc")
    models = {m.id: m.model_dump()["tunesmith"] for m in sdk.models.list().data}
    cli = builtin_rows()[0]  # the row `tunesmith models list` prints
    assert models[BASE] == {
        "kind": "builtin",
        "base_model": None,
        "job": None,
        "parameters": cli.parameters,
        "size_bytes": cli.bytes,
        "adapter": False,
        "default": True,
    }
    assert models[BASE]["parameters"] > 100_000_000
    tuned = models[FT]
    assert (tuned["kind"], tuned["base_model"], tuned["job"]) == ("fine-tuned", BASE, "ftjob-abc")
    assert (tuned["size_bytes"], tuned["adapter"]) == (2, True)
    assert sdk.models.retrieve(FT).model_dump()["tunesmith"] == tuned


def test_retrieve_and_delete_a_fine_tuned_model(sdk, store, tmp_path):
    register(store, FT, tmp_path)
    model = sdk.models.retrieve(FT)  # colons travel as they are in the path
    assert (model.id, model.object, model.created) == (FT, "model", 123)

    deleted = sdk.models.delete(FT)
    assert (deleted.id, deleted.object, deleted.deleted) == (FT, "model", True)
    assert tmp_path.exists()  # not a job's own model folder: left alone
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve(FT)
    assert caught.value.code == "model_not_found"
    assert caught.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        sdk.models.delete(FT)


def test_deleting_removes_only_the_models_own_folder(sdk, store):
    job = store.jobs.create(
        model=BASE,
        training_file="file-x",
        validation_file=None,
        suffix="demo",
        seed=1,
        metadata=None,
        method={"type": "supervised"},
        config={},
    )
    run_dir = Path(job.run_dir)
    final, checkpoint = run_dir / "model", run_dir / "checkpoints" / "checkpoint-3"
    for folder in (final, checkpoint):
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
    register(store, FT, final, job_id=job.id)
    register(store, f"{FT[:-8]}zzzz9999:ckpt-step-3", checkpoint, "checkpoint", job.id)

    assert sdk.models.delete(f"{FT[:-8]}zzzz9999:ckpt-step-3").deleted is True
    assert checkpoint.exists()  # a paused or cancelled job resumes from it
    assert sdk.models.delete(FT).deleted is True
    assert not final.exists()
    assert [m.id for m in sdk.models.list().data] == [BASE]


def test_base_and_unknown_models(sdk):
    assert sdk.models.retrieve(BASE).id == BASE
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.models.delete(BASE)
    assert caught.value.param == "model" and "base model" in caught.value.message
    for name in ("nope", "org/some-model", "ft:nope:local::x"):
        with pytest.raises(openai.NotFoundError) as caught:
            sdk.models.retrieve(name)
        assert caught.value.code == "model_not_found"


# --- every /v1 route: auth and the schema ---------------------------------------------------------


def test_api_keys_are_checked(serve, client):
    url = serve(api_keys=["sk-right"])
    with pytest.raises(openai.AuthenticationError) as caught:
        client(url, api_key="sk-wrong").models.list()
    assert caught.value.status_code == 401
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    assert caught.value.code == "invalid_api_key"

    assert client(url, api_key="sk-right").models.retrieve(BASE).id == BASE

    bare = httpx.get(f"{url}/models")
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "invalid_api_key"
    assert "provide an API key" in bare.json()["error"]["message"]
    assert httpx.get(f"{url}/files").status_code == 401


def test_openapi_lists_every_route(serve):
    url = serve()
    schema = httpx.get(url.removesuffix("/v1") + "/openapi.json").json()
    paths = schema["paths"]
    expected = {
        "/v1/files": {"get", "post"},
        "/v1/files/{file_id}": {"get", "delete"},
        "/v1/files/{file_id}/content": {"get"},
        "/v1/fine_tuning/jobs": {"get", "post"},
        "/v1/fine_tuning/jobs/{fine_tuning_job_id}": {"get"},
        "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel": {"post"},
        "/v1/fine_tuning/jobs/{fine_tuning_job_id}/pause": {"post"},
        "/v1/fine_tuning/jobs/{fine_tuning_job_id}/resume": {"post"},
        "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events": {"get"},
        "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints": {"get"},
        "/v1/models": {"get"},
        "/v1/models/{model}": {"get", "delete"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), path
    upload = paths["/v1/files"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert {"file", "purpose"} <= set(upload["schema"]["properties"])
    create = paths["/v1/fine_tuning/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert create["schema"]["$ref"].endswith("/CreateFineTuningJob")


# --- which model names a client may use -----------------------------------------------------------


def model_folder(path: Path) -> Path:
    """Enough of a model folder for a name to resolve (nothing is loaded)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def refusal(sdk, model: str) -> openai.APIStatusError | None:
    """Create a job with `model` and a missing training file: the model check comes first, so
    a refused model says so, and an accepted one gets as far as the file."""
    try:
        sdk.fine_tuning.jobs.create(model=model, training_file="file-missing")
    except openai.APIStatusError as exc:
        return None if exc.param == "training_file" else exc
    raise AssertionError("the job was created")


def test_model_folders_resolve_only_under_the_model_dirs(serve, client, tmp_path):
    allowed = model_folder(tmp_path / "allowed" / "tiny")
    outside = model_folder(tmp_path / "outside" / "tiny")
    (tmp_path / "allowed" / "escape").symlink_to(outside)

    closed = client(serve())
    opened = client(serve(model_dirs=[tmp_path / "allowed"]))
    assert refusal(opened, str(allowed)) is None
    for sdk, name in [
        (closed, str(allowed)),
        (opened, str(outside)),
        (opened, str(tmp_path / "allowed" / "escape")),  # a link out of the folder
        (opened, str(tmp_path / "allowed" / ".." / "outside" / "tiny")),
    ]:
        refused = refusal(sdk, name)
        assert refused is not None and refused.code == "model_not_available", name
        # A folder that exists is refused in the very words of one that does not: no probing.
        missing = refusal(sdk, name + "-missing")
        assert refused.message == missing.message.replace(name + "-missing", name)


def test_hub_ids_only_when_the_operator_allows_them(serve, client, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the server thread reads it: a hub "is" reachable
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    refused = refusal(client(serve()), hub_id)
    assert refused is not None and refused.code == "model_not_available"
    assert refusal(client(serve(hub_models=True)), hub_id) is None


def test_built_in_and_registered_models_need_no_model_dirs(serve, client, store, tmp_path):
    register(store, FT, model_folder(tmp_path / "adapter"))
    sdk = client(serve())
    assert refusal(sdk, BASE) is None
    assert refusal(sdk, FT) is None


def test_a_model_folder_that_cannot_load_is_a_400(serve, client, tmp_path):
    broken = model_folder(tmp_path / "models" / "broken")
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    sdk = client(serve(model_dirs=[tmp_path / "models"]))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=str(broken), messages=[{"role": "user", "content": "hi"}])
    assert (caught.value.code, caught.value.param) == ("model_not_loadable", "model")
    assert str(broken) in caught.value.message
    assert sdk.models.list().data  # and the server goes on serving


def test_models_named_to_warm_load_while_the_server_already_answers(
    serve, client, tiny_model_dir, caplog
):
    """TUNESMITH_WARM's models load on a thread of their own as the server starts; a name that
    does not resolve is logged and skipped, and the server serves all the same."""
    caplog.set_level(logging.WARNING, logger="tunesmith.api.app")
    tiny = str(tiny_model_dir)
    sdk = client(serve(model_dirs=[tiny_model_dir.parent], warm=[tiny, "no-such-model"]))
    assert [m.id for m in sdk.models.list().data]  # answering before (or while) it loads
    deadline = time.monotonic() + 60
    while f"{tiny} is loaded" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"{tiny} is loaded" in caplog.text
    assert "Not warming no-such-model" in caplog.text
    reply = sdk.chat.completions.create(
        model=tiny, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert reply.choices[0].message.content is not None
