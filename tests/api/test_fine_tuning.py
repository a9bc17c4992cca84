"""Fine-tuning jobs through the official SDK, with no workers: jobs are validated in the
background and then wait in the queue (training is tested elsewhere)."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tunesmith.api.protocol.fine_tuning import CreateFineTuningJob, Hyperparameters
from tunesmith.api.routes.fine_tuning import (
    method_hyperparameters,
    to_config,
)
from tunesmith.errors import TunesmithError
from tunesmith.jobs.service import openai_method
from tunesmith.store import open_store
from tunesmith.train.config import BASE_LEARNING_RATE

MODEL = "smollm2-135m-instruct"
POLL_SECONDS = 30


def wait_for(sdk: openai.OpenAI, job_id: str, *statuses: str):
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def upload(sdk: openai.OpenAI, path) -> str:
    with open(path, "rb") as f:
        return sdk.files.create(file=f, purpose="fine-tune").id


def upload_lines(sdk: openai.OpenAI, records: list) -> str:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    return sdk.files.create(file=("data.jsonl", data), purpose="fine-tune").id


@pytest.fixture
def train_id(sdk, orders) -> str:
    # The 40-example validation split keeps the background validation quick.
    return upload(sdk, orders / "validation.jsonl")


def example(i: int, role: str = "user") -> dict:
    return {
        "messages": [
            {"role": role, "content": f"Say {i}."},
            {"role": "assistant", "content": str(i)},
        ]
    }


# --- create, validate, queue ----------------------------------------------------------------------


def test_created_job_validates_and_waits_in_the_queue(sdk, orders):
    train = upload(sdk, orders / "train.jsonl")
    valid = upload(sdk, orders / "validation.jsonl")
    job = sdk.fine_tuning.jobs.create(
        model=MODEL, training_file=train, validation_file=valid, suffix="orders"
    )
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert job.status == "validating_files"
    assert job.hyperparameters.n_epochs == "auto"
    assert job.hyperparameters.batch_size == "auto"
    assert job.hyperparameters.learning_rate_multiplier == "auto"
    assert job.method.type == "supervised"
    assert job.method.supervised.hyperparameters.n_epochs == "auto"
    assert (job.fine_tuned_model, job.finished_at, job.trained_tokens) == (None, None, None)
    assert job.result_files == [] and isinstance(job.seed, int)
    assert (job.model, job.training_file, job.validation_file) == (MODEL, train, valid)
    assert job.user_provided_suffix == "orders"

    job = wait_for(sdk, job.id, "queued", "failed")
    assert job.status == "queued", job.error  # workers=0: nothing claims it
    assert job.error is None

    events = sdk.fine_tuning.jobs.list_events(job.id)
    assert events.has_more is False
    assert [e.message for e in events.data] == [  # newest first
        "Files validated, moving job to queued state",
        f"Validating training file: {train} and validation file: {valid}",
        f"Created fine-tuning job: {job.id}",
    ]
    assert all(e.object == "fine_tuning.job.event" and e.level == "info" for e in events.data)
    newest = sdk.fine_tuning.jobs.list_events(job.id, limit=1)
    assert newest.has_more is True
    older = sdk.fine_tuning.jobs.list_events(job.id, after=newest.data[0].id)
    assert [e.id for e in older.data] == [e.id for e in events.data[1:]]

    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job.id)
    assert checkpoints.data == [] and checkpoints.has_more is False


def test_seed_metadata_and_hyperparameters_are_kept(sdk, train_id, tunesmith_home):
    job = sdk.fine_tuning.jobs.create(
        model=MODEL,
        training_file=train_id,
        seed=42,
        metadata={"team": "orders"},
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 2, "learning_rate_multiplier": 2}},
        },
        extra_body={"config": {"method": "full", "lora": {"r": 8}, "max_length": 512}},
    )
    assert job.seed == 42 and job.metadata == {"team": "orders"}
    hp = job.method.supervised.hyperparameters
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier) == (2, "auto", 2)
    assert job.hyperparameters.model_dump() == hp.model_dump()
    store = open_store()
    config = store.jobs.get(job.id).config
    store.close()
    # `method: full` is the name tuning had before preference methods: still read as SFT, full
    assert (config["epochs"], config["method"], config["tuning"]) == (2, "sft", "full")
    assert config["max_length"] == 512
    assert config["learning_rate"] == pytest.approx(2 * BASE_LEARNING_RATE["sft"]["full"])
    assert config["lora"]["r"] == 8 and config["seed"] == 42


def test_job_with_a_bad_training_file_fails_naming_file_and_line(sdk):
    records = [example(i) for i in range(12)]
    records[4] = example(4, role="bot")
    bad_role = upload_lines(sdk, records)
    too_few = upload_lines(sdk, [example(i) for i in range(3)])

    job = sdk.fine_tuning.jobs.create(model=MODEL, training_file=bad_role)
    job = wait_for(sdk, job.id, "queued", "failed")
    assert job.status == "failed"
    assert job.error.code == "invalid_training_file"
    assert job.error.param == "training_file"
    assert "line 5" in job.error.message and "bot" in job.error.message
    assert job.finished_at is not None
    events = sdk.fine_tuning.jobs.list_events(job.id).data
    assert events[0].level == "error" and events[0].message.startswith("Fine-tuning job failed")

    job = wait_for(
        sdk, sdk.fine_tuning.jobs.create(model=MODEL, training_file=too_few).id, "failed"
    )
    assert job.status == "failed" and job.error.param == "training_file"
    assert "3 example(s); at least 10" in job.error.message


# --- refusals at create ---------------------------------------------------------------------------


def test_method_mistakes_are_400_naming_the_field(sdk, train_id):
    def refused(method: dict, **kwargs) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.fine_tuning.jobs.create(
                model=MODEL, training_file=train_id, method=method, **kwargs
            )
        return caught.value

    assert refused({"type": "reinforcement"}).param == "method.reinforcement.grader"
    bad_grader = {
        "type": "reinforcement",
        "reinforcement": {"grader": {"type": "string_check", "name": "x", "operation": "same"}},
    }
    assert refused(bad_grader).param.startswith("method.reinforcement.grader")
    beta = {"type": "dpo", "dpo": {"hyperparameters": {"beta": -1}}}
    assert refused(beta).param == "method.dpo.hyperparameters.beta"
    mismatch = refused({"type": "dpo"}, extra_body={"config": {"method": "grpo"}})
    assert mismatch.param == "config.method" and "does not fit" in mismatch.message
    assert sdk.fine_tuning.jobs.list().data == []


def test_bad_requests_are_400_with_the_param(sdk, train_id):
    def refused(**kwargs) -> openai.BadRequestError:
        kwargs = {"model": MODEL, "training_file": train_id, **kwargs}
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.fine_tuning.jobs.create(**kwargs)
        return caught.value

    unknown = refused(model="no-such-model")
    assert (unknown.param, unknown.code) == ("model", "model_not_available")
    assert refused(training_file="file-nope").param == "training_file"
    assert refused(validation_file="file-nope").param == "validation_file"
    assert refused(suffix="x" * 65).param == "suffix"
    assert refused(suffix="a:b").param == "suffix"
    assert refused(seed=-1).param == "seed"
    assert refused(metadata={f"k{i}": "v" for i in range(17)}).param == "metadata"
    too_many = refused(
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 51}}}
    )
    assert too_many.param == "method.supervised.hyperparameters.n_epochs"
    assert refused(hyperparameters={"batch_size": 0}).param == "hyperparameters.batch_size"
    assert (
        refused(hyperparameters={"learning_rate_multiplier": 0}).param
        == "hyperparameters.learning_rate_multiplier"
    )
    typo = refused(extra_body={"config": {"lora": {"rr": 8}}})
    assert typo.param == "config.lora.rr" and "Did you mean 'lora.r'?" in typo.message
    assert refused(extra_body={"config": {"data": "/etc/passwd"}}).param == "config.data"
    assert sdk.fine_tuning.jobs.list().data == []  # nothing was created


# --- list, filter, paginate -----------------------------------------------------------------------


def test_list_pages_newest_first_and_auto_iterates_without_extra_requests(serve, client, orders):
    requests: list[str] = []
    http = openai.DefaultHttpxClient(
        event_hooks={"request": [lambda r: requests.append(f"{r.method} {r.url.path}")]}
    )
    sdk = client(serve(), http_client=http)
    train = upload(sdk, orders / "validation.jsonl")
    created = [
        sdk.fine_tuning.jobs.create(model=MODEL, training_file=train, metadata={"n": str(i)}).id
        for i in range(5)
    ]

    first = sdk.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in first.data] == created[::-1][:2]
    assert first.has_more is True
    second = first.get_next_page()
    assert [j.id for j in second.data] == created[::-1][2:4]

    requests.clear()
    seen = [job.id for job in sdk.fine_tuning.jobs.list(limit=2)]
    assert seen == created[::-1]  # each exactly once, newest first
    assert requests == ["GET /v1/fine_tuning/jobs"] * 3  # pages of 2, 2, 1: no empty 4th call

    only = sdk.fine_tuning.jobs.list(metadata={"n": "3"})
    assert [j.id for j in only.data] == [created[3]]
    assert sdk.fine_tuning.jobs.list(metadata={"n": "9"}).data == []


# --- cancel, pause, resume ------------------------------------------------------------------------


def test_cancel_pause_resume(sdk, train_id):
    a = sdk.fine_tuning.jobs.create(model=MODEL, training_file=train_id)
    b = sdk.fine_tuning.jobs.create(model=MODEL, training_file=train_id)
    assert wait_for(sdk, a.id, "queued").status == "queued"
    assert wait_for(sdk, b.id, "queued").status == "queued"

    cancelled = sdk.fine_tuning.jobs.cancel(a.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    with pytest.raises(openai.BadRequestError) as caught:  # 400, not 409 (the SDK retries 409)
        sdk.fine_tuning.jobs.cancel(a.id)
    assert caught.value.status_code == 400 and caught.value.code == "invalid_job_state"
    with pytest.raises(openai.BadRequestError):
        sdk.fine_tuning.jobs.pause(a.id)

    assert [e.message for e in sdk.fine_tuning.jobs.list_events(a.id).data] == [
        "Fine-tuning job cancelled",
        "Files validated, moving job to queued state",
        f"Validating training file: {train_id}",
        f"Created fine-tuning job: {a.id}",
    ]

    assert sdk.fine_tuning.jobs.pause(b.id).status == "paused"
    with pytest.raises(openai.BadRequestError):
        sdk.fine_tuning.jobs.pause(b.id)
    assert sdk.fine_tuning.jobs.resume(b.id).status == "queued"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.fine_tuning.jobs.resume(b.id)
    assert caught.value.code == "invalid_job_state"
    assert (
        sdk.fine_tuning.jobs.list_events(b.id).data[0].message.startswith("Fine-tuning job resumed")
    )


def test_unknown_job_is_404(sdk):
    jobs = sdk.fine_tuning.jobs
    for call in (jobs.retrieve, jobs.cancel, jobs.pause, jobs.resume, jobs.list_events):
        with pytest.raises(openai.NotFoundError) as caught:
            call("ftjob-nope")
        assert caught.value.code == "fine_tuning_job_not_found"
    with pytest.raises(openai.NotFoundError):
        jobs.checkpoints.list("ftjob-nope")


# --- the translation, without a server ------------------------------------------------------------


def request(**kwargs) -> CreateFineTuningJob:
    return CreateFineTuningJob.model_validate({"model": MODEL, "training_file": "file-x", **kwargs})


def test_openai_fields_become_an_sft_config():
    body = request(
        suffix="s",
        seed=3,
        hyperparameters={"n_epochs": 4, "batch_size": 2, "learning_rate_multiplier": 0.5},
    )
    hp = method_hyperparameters(body)
    config = to_config(body, hp)
    assert (config.model, config.suffix, config.seed) == (MODEL, "s", 3)
    assert (config.epochs, config.batch_size) == (4, 2)
    assert config.learning_rate == pytest.approx(0.5 * BASE_LEARNING_RATE["sft"]["lora"])
    assert openai_method(config, hp.model_dump())["supervised"]["hyperparameters"] == {
        "n_epochs": 4,
        "batch_size": 2,
        "learning_rate_multiplier": 0.5,
    }

    auto = to_config(request(), Hyperparameters())
    assert (auto.epochs, auto.batch_size, auto.learning_rate) == ("auto", "auto", "auto")

    extension = request(config={"learning_rate": 2e-4, "epochs": 3})
    config = to_config(extension, method_hyperparameters(extension))
    method = openai_method(config, Hyperparameters().model_dump())["supervised"]["hyperparameters"]
    assert method == {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": 0.5}


def test_settings_given_twice_must_agree():
    with pytest.raises(TunesmithError) as caught:
        body = request(hyperparameters={"n_epochs": 2}, config={"epochs": 3})
        to_config(body, method_hyperparameters(body))
    assert caught.value.param == "config.epochs"
    with pytest.raises(TunesmithError) as caught:
        method_hyperparameters(
            request(
                hyperparameters={"n_epochs": 2},
                method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}},
            )
        )
    assert caught.value.param == "hyperparameters"
    with pytest.raises(TunesmithError) as caught:
        body = request(hyperparameters={"learning_rate_multiplier": 5000})
        to_config(body, method_hyperparameters(body))
    assert "below 1" in caught.value.message


def test_dpo_and_reinforcement_requests_become_their_configs():
    dpo = request(
        method={
            "type": "dpo",
            "dpo": {
                "hyperparameters": {"beta": 0.25, "n_epochs": 2, "learning_rate_multiplier": 2}
            },
        }
    )
    hp = method_hyperparameters(dpo)
    config = to_config(dpo, hp)
    assert (config.method, config.beta, config.epochs) == ("dpo", 0.25, 2)
    assert config.learning_rate == pytest.approx(2 * BASE_LEARNING_RATE["dpo"]["lora"])
    assert openai_method(config, hp.model_dump())["dpo"]["hyperparameters"]["beta"] == 0.25

    orpo = request(method={"type": "dpo"}, config={"method": "orpo", "beta": 0.3})
    config = to_config(orpo, method_hyperparameters(orpo))
    assert (config.method, config.beta) == ("orpo", 0.3)
    assert openai_method(config, method_hyperparameters(orpo).model_dump())["type"] == "dpo"

    grader = {
        "type": "string_check",
        "name": "exact",
        "input": "{{ sample.output_text }}",
        "reference": "{{ item.answer }}",
        "operation": "eq",
    }
    rft = request(
        method={
            "type": "reinforcement",
            "reinforcement": {"grader": grader, "hyperparameters": {"compute_multiplier": 2}},
        }
    )
    hp = method_hyperparameters(rft)
    config = to_config(rft, hp)
    assert (config.method, config.grader["operation"], config.num_generations) == ("grpo", "eq", 8)
    stored = openai_method(config, hp.model_dump())
    assert (
        stored["type"] == "reinforcement" and stored["reinforcement"]["grader"]["name"] == "exact"
    )

    with pytest.raises(TunesmithError) as caught:
        to_config(
            request(method={"type": "supervised"}, config={"method": "dpo"}), Hyperparameters()
        )
    assert caught.value.param == "config.method"
    legacy = request(method={"type": "dpo"}, hyperparameters={"n_epochs": 2})
    with pytest.raises(TunesmithError) as caught:
        method_hyperparameters(legacy)
    assert caught.value.param == "hyperparameters"
