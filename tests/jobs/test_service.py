"""The one job service: local submissions are claimed at once, warnings don't fail jobs, files
keep their format, and validation runs in a child process under a memory limit."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest

from tunesmith.jobs.service import create_job, submit_here, validate_files
from tunesmith.jobs.validation import Validator
from tunesmith.settings import get_settings
from tunesmith.store import open_store
from tunesmith.store.lifecycle import Runner
from tunesmith.train.config import SFTConfig


def lines(source: Path, target: Path, n: int, start: int = 0) -> Path:
    target.write_text("".join(source.read_text().splitlines(keepends=True)[start : start + n]))
    return target


def test_a_local_submission_is_claimed_at_validation_so_no_worker_can_take_it(
    tiny_model_dir, orders, tmp_path
):
    """`tunesmith train` used to queue its job, then claim it: a server worker could take it in
    between. Now the job goes from validating_files straight to running under this process."""
    store = open_store()
    me = Runner(4242, "this-host")
    data = lines(orders / "train.jsonl", tmp_path / "train.jsonl", 12)
    job = submit_here(store, SFTConfig(data=data, model=str(tiny_model_dir)), me).job
    assert (job.status, job.runner) == ("running", me)
    assert store.jobs.claim_next(Runner(1, "server")) is None  # nothing queued, ever
    messages = [e.message for e in store.events.list(job.id).data]
    assert not any("moving job to queued state" in m for m in messages)


def test_shared_and_duplicate_examples_warn_and_the_job_still_runs(
    tiny_model_dir, orders, tmp_path
):
    """OpenAI's cookbook flow shares one example between its training and validation files:
    OpenAI runs such a job; it used to fail here with invalid_validation_file."""
    store = open_store()
    train = lines(orders / "train.jsonl", tmp_path / "t.jsonl", 12)
    valid = tmp_path / "v.jsonl"
    valid.write_text(train.read_text().splitlines(keepends=True)[0] * 2 + "".join(
        (orders / "validation.jsonl").read_text().splitlines(keepends=True)[:3]
    ))  # fmt: skip
    t, v = (store.files.add_path(p, "fine-tune") for p in (train, valid))
    job = create_job(
        store, SFTConfig(model=str(tiny_model_dir)), training_file=t.id, validation_file=v.id
    )
    job = validate_files(store, job)
    assert job.status == "queued", job.error
    warnings = [e for e in store.events.list(job.id, limit=50).data if e.level == "warn"]
    kinds = sorted(e.data["kind"] for e in warnings)
    assert kinds == ["duplicate", "validation_overlap", "validation_overlap"]
    assert all("validation file line " in e.message for e in warnings)


def test_an_uploaded_csv_is_read_as_csv_with_its_mapping(tiny_model_dir, orders):
    """Stored files used to lose their suffix, so a CSV upload was parsed as JSONL."""
    store = open_store()
    rows = [json.loads(x) for x in (orders / "train.jsonl").read_text().splitlines()[:12]]
    text = "question,answer\n" + "".join(
        '"{}","{}"\n'.format(
            r["messages"][-2]["content"].replace('"', '""'),
            r["messages"][-1]["content"].replace('"', '""'),
        )
        for r in rows
    )
    file = store.files.save_stream(io.BytesIO(text.encode()), "train.csv", "fine-tune")
    assert Path(file.path).suffix == ".csv"
    config = SFTConfig(
        model=str(tiny_model_dir), mapping={"user": "question", "assistant": "answer"}
    )
    job = validate_files(store, create_job(store, config, training_file=file.id))
    assert job.status == "queued", job.error


def wait_status(store, job_id: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while (status := store.jobs.get(job_id).status) == "validating_files":
        assert time.monotonic() < deadline, "validation did not finish"
        time.sleep(0.1)
    return status


@pytest.mark.slow
def test_a_file_too_big_to_check_fails_its_own_job_in_the_child(tiny_model_dir, orders, tmp_path):
    """Validation runs in a child with an address-space limit: a huge file costs that job, not
    the server, and the next job is checked by a fresh child."""
    settings = get_settings().model_copy(update={"validation_memory_bytes": 3 * 1024**3 // 2})
    store = open_store(settings)
    huge = tmp_path / "huge.jsonl"
    with huge.open("w") as f:  # ~400 MB of answers: parsing it alone passes the limit
        answer = "x" * (4 * 1024**2)
        for _ in range(100):
            f.write(json.dumps({"messages": [{"role": "user", "content": "q"},
                                             {"role": "assistant", "content": answer}]}) + "\n")  # fmt: skip
    small = lines(orders / "train.jsonl", tmp_path / "small.jsonl", 12)
    config = SFTConfig(model=str(tiny_model_dir))
    big_job = create_job(store, config, training_file=store.files.add_path(huge, "fine-tune").id)
    ok_job = create_job(store, config, training_file=store.files.add_path(small, "fine-tune").id)
    validator = Validator(settings, store)
    try:
        validator.submit(big_job.id)
        validator.submit(ok_job.id)
        assert wait_status(store, big_job.id) == "failed"
        assert wait_status(store, ok_job.id) == "queued"
    finally:
        validator.close()
    error = store.jobs.get(big_job.id).error
    assert error["code"] == "file_too_large" and "memory" in error["message"]


def test_a_fault_in_the_validating_thread_is_retried_not_the_end_of_it(
    tiny_model_dir, orders, tmp_path, monkeypatch
):
    """One "database is locked" used to end the supervisor's validation thread silently."""
    import sqlite3

    from tunesmith.jobs import validation

    monkeypatch.setattr(validation, "RETRY_SECONDS", 0.1)
    store = open_store()
    small = lines(orders / "train.jsonl", tmp_path / "small.jsonl", 12)
    file = store.files.add_path(small, "fine-tune")
    job = create_job(store, SFTConfig(model=str(tiny_model_dir)), training_file=file.id)
    real_get, faults = store.jobs.get, iter([True, False])

    def flaky_get(job_id: str):
        if threading.current_thread().name == "validate-files" and next(faults, False):
            raise sqlite3.OperationalError("database is locked")
        return real_get(job_id)

    monkeypatch.setattr(store.jobs, "get", flaky_get)
    validator = Validator(get_settings(), store)
    try:
        validator.submit(job.id)
        assert wait_status(store, job.id) == "queued"
    finally:
        validator.close()
