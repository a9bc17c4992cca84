"""The store: migrations, files by id, jobs and their lifecycle, events, checkpoints, the registry.

Every test runs on SQLite and on PostgreSQL (the `backend` fixture, tests/store/conftest.py),
except those about SQLite's own file and locks."""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tunesmith.errors import NotFoundError, TooLargeError, TunesmithError
from tunesmith.models.spec import ModelSpec
from tunesmith.settings import Settings, get_settings
from tunesmith.store import Store, open_store
from tunesmith.store import migrations as migrations_module
from tunesmith.store.lifecycle import Runner
from tunesmith.store.migrations import MIGRATIONS, migrate

pytestmark = pytest.mark.usefixtures("backend")
# A test about SQLite itself (its file, its locks) runs on that backend alone.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

METHOD = {
    "type": "supervised",
    "supervised": {
        "hyperparameters": {"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": "auto"}
    },
}


@pytest.fixture
def store() -> Store:
    opened = open_store()
    yield opened
    opened.close()


def new_job(store: Store, *, metadata: dict | None = None, status: str = "queued"):
    """A job walked along legal moves to `status` (validating_files, queued or a final one)."""
    job = store.jobs.create(
        model="smollm2-135m-instruct",
        training_file="file-train",
        validation_file=None,
        suffix="orders",
        seed=7,
        metadata=metadata,
        method=METHOD,
        config={"epochs": "auto"},
    )
    if status != "validating_files":
        job = store.jobs.move(job.id, "queued")
    return job


def applied(store: Store) -> list[tuple[int, int]]:
    rows = store.query("SELECT version, applied_at FROM migrations ORDER BY version")
    return [(r["version"], r["applied_at"]) for r in rows]


# --- migrations -----------------------------------------------------------------------------------


def test_migrations_are_recorded_once_and_reopening_applies_nothing(tunesmith_home, backend):
    first = open_store()
    job = new_job(first)
    before = applied(first)
    first.close()
    assert [v for v, _ in before] == list(range(1, len(MIGRATIONS) + 1))
    assert first.path == (tunesmith_home / "tunesmith.db" if backend == "sqlite" else None)

    second = open_store()  # would fail with "table files already exists" if re-applied
    assert applied(second) == before
    assert second.jobs.get(job.id).id == job.id
    second.close()


def test_a_new_migration_is_applied_to_an_old_store_alone(monkeypatch):
    first = open_store()
    before = applied(first)
    first.close()
    grown = [*MIGRATIONS, "CREATE TABLE extra (x INTEGER); INSERT INTO extra (x) VALUES (1)"]
    monkeypatch.setattr(migrations_module, "MIGRATIONS", grown)

    second = open_store()
    after = applied(second)
    assert after[: len(before)] == before
    assert [v for v, _ in after] == list(range(1, len(grown) + 1))
    assert [r["x"] for r in second.query("SELECT x FROM extra")] == [1]
    second.close()
    third = open_store()  # and the new one is not applied twice either
    assert [r["x"] for r in third.query("SELECT x FROM extra")] == [1]
    third.close()


@sqlite_only
def test_a_store_migrated_by_another_process_meanwhile_is_not_migrated_again(tmp_path, backend):
    """Two processes opening a fresh home at once (a worker and `tunesmith train`): the second one
    must see, under its write lock, that the first already applied a migration.

    The interleaving is forced: just as connection `a` begins its migration transaction, `b` runs
    all migrations to the end.
    """
    path = tmp_path / "race.db"
    a = sqlite3.connect(path, isolation_level=None, timeout=5)
    b = sqlite3.connect(path, isolation_level=None, timeout=5)
    cut_in: list[str] = []

    def trace(sql: str) -> None:
        if sql.startswith("BEGIN") and not cut_in:
            cut_in.append(sql)
            migrate(b)

    a.set_trace_callback(trace)
    try:
        migrate(a)
        a.set_trace_callback(None)
        assert cut_in, "the other connection never cut in"
        versions = [r[0] for r in a.execute("SELECT version FROM migrations ORDER BY version")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
    finally:
        a.close()
        b.close()


@sqlite_only
def test_fresh_store_opened_by_several_connections_at_once(tmp_path, backend):
    """The same race unforced: six connections open one fresh home at the same moment, ten
    times over. Besides the migration race, `PRAGMA journal_mode=WAL` on a fresh file can
    answer "database is locked" at once (SQLite skips the busy handler there)."""
    errors: list[str] = []
    for trial in range(10):
        home = tmp_path / f"home{trial}"
        home.mkdir()
        settings = Settings(home=home)
        start = threading.Barrier(6)

        def open_one(home: Path = home, settings=settings, start=start) -> None:
            start.wait()
            try:
                Store(home / "tunesmith.db", settings).close()
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=open_one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert errors == []


# --- files ----------------------------------------------------------------------------------------


def test_saved_file_lands_under_files_dir_named_by_id(store, tunesmith_home):
    payload = b'{"messages": []}\n' * 100
    row = store.files.save_stream(io.BytesIO(payload), "../../evil name.jsonl", "fine-tune")
    path = Path(row.path)
    assert row.id.startswith("file-")
    assert path == get_settings().files_dir / f"{row.id}.jsonl"  # its format kept, not its name
    assert path.parent == tunesmith_home.resolve() / "files"
    assert path.read_bytes() == payload
    assert row.bytes == len(payload)
    assert row.filename == "../../evil name.jsonl"  # kept for display, never used as a path
    assert not list(tunesmith_home.rglob("evil*"))
    assert store.files.get(row.id) == row


@pytest.mark.parametrize(
    ("name", "suffix"),
    [("train.CSV", ".csv"), ("a.parquet", ".parquet"), ("x", ""), ("a./../b", ""), ("a.j$on", "")],
)
def test_a_stored_file_keeps_only_a_plain_suffix(store, name, suffix):
    row = store.files.save_stream(io.BytesIO(b"x"), name, "fine-tune")
    assert Path(row.path).name == row.id + suffix


def test_add_path_copies_the_file(store, tmp_path):
    source = tmp_path / "train.jsonl"
    source.write_text("x" * 1234)
    row = store.files.add_path(source, "fine-tune")
    assert (row.filename, row.bytes, row.purpose) == ("train.jsonl", 1234, "fine-tune")
    assert Path(row.path) != source
    assert Path(row.path).read_text() == "x" * 1234


def test_stream_over_the_limit_is_refused_and_leaves_nothing(store):
    files_dir = get_settings().files_dir
    ok = store.files.save_stream(io.BytesIO(b"1234567890"), "exact.jsonl", "fine-tune", 10)
    assert ok.bytes == 10
    with pytest.raises(TooLargeError) as caught:
        store.files.save_stream(io.BytesIO(b"12345678901"), "big.jsonl", "fine-tune", 10)
    assert caught.value.status == 413
    assert caught.value.param == "file"
    assert sorted(p.name for p in files_dir.iterdir()) == [Path(ok.path).name]  # no .part
    rows, has_more = store.files.list()
    assert [r.id for r in rows] == [ok.id]
    assert has_more is False


def test_files_list_pages_through_every_file_once(store):
    ids = {
        store.files.save_stream(io.BytesIO(b"x"), f"{n}.jsonl", "fine-tune").id for n in range(5)
    }
    store.files.save_stream(io.BytesIO(b"x"), "results.csv", "fine-tune-results")
    seen, after, flags = [], None, []
    while True:
        rows, has_more = store.files.list(purpose="fine-tune", limit=2, after=after)
        seen += [r.id for r in rows]
        flags.append(has_more)
        if not has_more:
            break
        after = rows[-1].id
    assert sorted(seen) == sorted(ids)  # each once, the other purpose left out
    assert flags == [True, True, False]
    asc, _ = store.files.list(purpose="fine-tune", order="asc")
    assert [r.id for r in asc] == seen[::-1]


def test_delete_removes_file_and_row(store):
    row = store.files.save_stream(io.BytesIO(b"abc"), "a.jsonl", "fine-tune")
    store.files.delete(row.id)
    assert not Path(row.path).exists()
    with pytest.raises(NotFoundError) as caught:
        store.files.get(row.id)
    assert caught.value.status == 404
    with pytest.raises(NotFoundError):
        store.files.delete(row.id)


def test_file_to_openai_has_the_sdk_keys(store):
    row = store.files.save_stream(io.BytesIO(b"abc"), "a.jsonl", "fine-tune")
    data = row.to_openai()
    assert set(data) == {
        "id", "object", "bytes", "created_at", "filename", "purpose", "status", "expires_at",
        "status_details",
    }  # fmt: skip
    assert data["object"] == "file"
    assert data["bytes"] == 3
    assert data["status"] == "processed"
    assert isinstance(data["created_at"], int)


# --- jobs -----------------------------------------------------------------------------------------


def test_job_create_and_get(store):
    job = new_job(store, metadata={"team": "a"}, status="validating_files")
    got = store.jobs.get(job.id)
    assert got.id.startswith("ftjob-") and len(got.id) == len("ftjob-") + 24
    assert (got.status, got.model, got.seed) == ("validating_files", "smollm2-135m-instruct", 7)
    assert got.metadata == {"team": "a"}
    assert got.method == METHOD
    assert got.result_files == []
    assert got.finished_at is None
    assert Path(got.run_dir) == get_settings().runs_dir / got.id
    with pytest.raises(NotFoundError) as caught:
        store.jobs.get("ftjob-nope")
    assert caught.value.param == "fine_tuning_job_id"


@pytest.mark.parametrize(
    ("n", "sizes", "more"), [(5, [2, 2, 1], [True, True, False]), (4, [2, 2], [True, False])]
)
def test_jobs_page_newest_first_with_exclusive_after(store, n, sizes, more):
    ids = [new_job(store).id for _ in range(n)]
    pages, after = [], None
    while True:
        page = store.jobs.list(after=after, limit=2)
        pages.append(page)
        if not page.has_more:
            break
        after = page.data[-1].id
    assert [len(p.data) for p in pages] == sizes
    assert [p.has_more for p in pages] == more
    assert [j.id for p in pages for j in p.data] == ids[::-1]
    # `after` is exclusive: the page after the oldest job is empty.
    last = store.jobs.list(after=ids[0], limit=2)
    assert (last.data, last.has_more) == ([], False)


def test_jobs_page_after_an_unknown_id_is_not_found(store):
    new_job(store)
    with pytest.raises(NotFoundError) as caught:
        store.jobs.list(after="ftjob-nope")
    assert caught.value.param == "after"


def test_jobs_filter_by_metadata(store):
    a1 = new_job(store, metadata={"team": "a", "run": "1"})
    new_job(store, metadata={"team": "b"})
    new_job(store)
    a2 = new_job(store, metadata={"team": "a", "run": "2"})
    assert [j.id for j in store.jobs.list(metadata={"team": "a"}).data] == [a2.id, a1.id]
    assert [j.id for j in store.jobs.list(metadata={"team": "a", "run": "1"}).data] == [a1.id]
    assert store.jobs.list(metadata={"team": "c"}).data == []


@pytest.mark.parametrize("key", ["git.sha", "runs[0]", ""])
def test_jobs_filter_by_metadata_keys_holding_json_path_characters(store, key):
    """OpenAI's metadata keys are any string up to 64 characters; the filter must match the key
    as written, not read it as a JSON path (nor fail on one)."""
    wanted = new_job(store, metadata={key: "abc"})
    new_job(store, metadata={key: "other"})
    assert [j.id for j in store.jobs.list(metadata={key: "abc"}).data] == [wanted.id]


def test_a_move_from_a_wrong_state_is_a_400(store):
    job = new_job(store, status="validating_files")
    with pytest.raises(TunesmithError) as caught:
        store.jobs.move(job.id, "succeeded")
    assert caught.value.status == 400  # never 409: OpenAI's SDK would retry it
    assert caught.value.code == "invalid_job_state"
    assert "validating_files" in caught.value.message
    assert store.jobs.get(job.id).status == "validating_files"


def test_moves_set_finished_at_only_for_final_states(store):
    job = new_job(store, status="validating_files")
    queued = store.jobs.move(job.id, "queued")
    assert (queued.status, queued.finished_at) == ("queued", None)
    running = store.jobs.claim(job.id, Runner(42, "host-a"), only_from={"queued"})
    assert (running.status, running.finished_at, running.worker_pid) == ("running", None, 42)
    before = int(time.time())
    done = store.jobs.move(
        job.id,
        "succeeded",
        fine_tuned_model="ft:smollm2-135m-instruct:local:orders:AbCd1234",
        result_files=["file-results"],
    )
    assert done.status == "succeeded"
    assert before <= done.finished_at <= int(time.time())
    assert done.result_files == ["file-results"]
    with pytest.raises(TunesmithError):
        store.jobs.move(job.id, "cancelled")
    assert store.jobs.get(job.id).status == "succeeded"


@pytest.mark.parametrize("final", ["failed", "cancelled"])
def test_other_final_states_set_finished_at(store, final):
    job = new_job(store)
    assert store.jobs.move(job.id, final).finished_at is not None


def test_claim_next_gives_each_job_to_one_of_two_connections(store):
    other = open_store()
    try:
        new_job(store, status="validating_files")  # not claimable
        queued = [new_job(store).id for _ in range(3)]
        claims = [
            store.jobs.claim_next(Runner(1, "h")),
            other.jobs.claim_next(Runner(2, "h")),
            store.jobs.claim_next(Runner(1, "h")),
            other.jobs.claim_next(Runner(2, "h")),
        ]
        assert [c.id if c else None for c in claims] == [*queued, None]  # oldest first
        assert [c.worker_pid for c in claims[:3]] == [1, 2, 1]
        assert all(store.jobs.get(j).status == "running" for j in queued)
    finally:
        other.close()


def test_claim_next_race_claims_every_job_exactly_once(store):
    queued = {new_job(store).id for _ in range(8)}
    stores = [open_store() for _ in range(4)]  # one connection per thread, as processes have
    claimed: list[tuple[int, str]] = []
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def worker(pid: int, own: Store) -> None:
        try:
            start.wait()
            while (job := own.jobs.claim_next(Runner(pid, "h"))) is not None:
                claimed.append((pid, job.id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for s in stores:
        s.close()
    assert errors == []
    ids = [job_id for _, job_id in claimed]
    assert sorted(ids) == sorted(queued)  # every job once, none twice
    for pid, job_id in claimed:
        row = store.jobs.get(job_id)
        assert (row.status, row.worker_pid) == ("running", pid)


def test_job_to_openai_shape_through_its_life(store):
    job = new_job(store, metadata={"k": "v"})
    data = job.to_openai("local")
    required = {
        "id", "object", "created_at", "error", "fine_tuned_model", "finished_at",
        "hyperparameters", "model", "organization_id", "result_files", "seed", "status",
        "trained_tokens", "training_file", "validation_file",
    }  # fmt: skip
    assert required <= set(data)
    assert {"estimated_finish", "integrations", "metadata", "method"} <= set(data)
    assert data["object"] == "fine_tuning.job"
    assert data["organization_id"] == "local"
    assert data["hyperparameters"] == METHOD["supervised"]["hyperparameters"]
    assert data["result_files"] == []
    assert (data["fine_tuned_model"], data["finished_at"], data["error"]) == (None, None, None)
    assert data["metadata"] == {"k": "v"}
    assert data["user_provided_suffix"] == "orders"

    name = "ft:smollm2-135m-instruct:local:orders:AbCd1234"
    store.jobs.claim(job.id, Runner(1, "h"), only_from={"queued"})
    running = store.jobs.update(job.id, estimated_finish=2_000_000_000, fine_tuned_model=name)
    data = running.to_openai("local")
    assert data["estimated_finish"] == 2_000_000_000
    assert data["fine_tuned_model"] is None  # not a model until the job succeeded

    done = store.jobs.move(job.id, "succeeded", trained_tokens=99)
    data = done.to_openai("local")
    assert data["estimated_finish"] is None  # only while running
    assert data["fine_tuned_model"] == name
    assert data["trained_tokens"] == 99
    assert isinstance(data["finished_at"], int)


# --- events ---------------------------------------------------------------------------------------


def test_events_newest_first_since_and_metrics(store):
    job, other = new_job(store), new_job(store)
    store.events.add(job.id, "Created fine-tuning job")
    store.events.add(job.id, "Step 1/2: training loss=1.00", type="metrics", data={"step": 1})
    store.events.add(other.id, "Another job's event", type="metrics", data={"step": 9})
    store.events.add(job.id, "Step 2/2: training loss=0.50", type="metrics", data={"step": 2})
    store.events.add(job.id, "Disk almost full", level="warn")
    store.events.add(job.id, "The job has successfully completed")

    first = store.events.list(job.id, limit=2)
    assert [e.message for e in first.data] == [
        "The job has successfully completed",
        "Disk almost full",
    ]
    assert first.has_more is True
    rest = store.events.list(job.id, after=first.data[-1].id, limit=10)
    assert [e.message for e in rest.data] == [
        "Step 2/2: training loss=0.50", "Step 1/2: training loss=1.00", "Created fine-tuning job",
    ]  # fmt: skip
    assert rest.has_more is False

    everything = store.events.since(job.id)
    assert [e.message for e in everything] == [e.message for e in (first.data + rest.data)[::-1]]
    later = store.events.since(job.id, everything[1].seq)
    assert [e.message for e in later] == [e.message for e in everything[2:]]

    assert store.events.metrics(job.id) == [{"step": 1}, {"step": 2}]


def test_event_to_openai_shape(store):
    job = new_job(store)
    store.events.add(job.id, "Fine-tuning job started")
    store.events.add(job.id, "Step 1/1", type="metrics", data={"step": 1, "train_loss": 0.5})
    metrics, message = store.events.list(job.id).data
    data = message.to_openai()
    assert set(data) == {"object", "id", "created_at", "level", "message", "type", "data"}
    assert data["object"] == "fine_tuning.job.event"
    assert data["id"].startswith("ftevent-")
    assert (data["level"], data["type"], data["data"]) == ("info", "message", {})
    assert isinstance(data["created_at"], int)
    assert metrics.to_openai()["data"] == {"step": 1, "train_loss": 0.5}
    assert metrics.to_openai()["type"] == "metrics"


# --- checkpoints ----------------------------------------------------------------------------------


def test_checkpoints_list_newest_first_and_latest_by_step(store):
    job, other = new_job(store), new_job(store)
    assert store.checkpoints.latest(job.id) is None
    for step in (10, 30, 20):
        store.checkpoints.add(
            job.id, step, f"ft:m:o:s:AbCd1234:ckpt-step-{step}", "/x", {"step": step}
        )
    store.checkpoints.add(other.id, 99, "ft:other", "/y", {})
    page = store.checkpoints.list(job.id, limit=2)
    assert [c.step_number for c in page.data] == [20, 30]
    assert page.has_more is True
    rest = store.checkpoints.list(job.id, after=page.data[-1].id, limit=2)
    assert ([c.step_number for c in rest.data], rest.has_more) == ([10], False)
    latest = store.checkpoints.latest(job.id)
    assert (latest.step_number, latest.metrics) == (30, {"step": 30})

    data = latest.to_openai()
    assert set(data) == {
        "object", "id", "created_at", "fine_tuned_model_checkpoint", "fine_tuning_job_id",
        "step_number", "metrics",
    }  # fmt: skip
    assert data["object"] == "fine_tuning.job.checkpoint"
    assert data["id"].startswith("ftckpt_")
    assert data["fine_tuned_model_checkpoint"] == "ft:m:o:s:AbCd1234:ckpt-step-30"
    assert (data["fine_tuning_job_id"], data["step_number"]) == (job.id, 30)


# --- registry -------------------------------------------------------------------------------------


def spec(name: str, adapter: Path | None, kind: str = "fine-tuned") -> ModelSpec:
    return ModelSpec(
        name=name, kind=kind, base="smollm2-135m-instruct", weights="smollm2-135m-instruct",
        adapter=adapter, owned_by="local",
    )  # fmt: skip


def test_registry_register_get_list_delete(store, tmp_path):
    name = "ft:smollm2-135m-instruct:local:orders:AbCd1234"
    assert store.models.get(name) is None
    store.models.register(spec(name, tmp_path / "adapter"), job_id="ftjob-x")
    got = store.models.get(name)
    assert got.created > 0  # stamped on registration
    assert got == replace(spec(name, tmp_path / "adapter"), created=got.created)
    assert got.extra == {"job_id": "ftjob-x"}
    ckpt = f"{name[:-8]}ZyXw9876:ckpt-step-5"
    store.models.register(spec(ckpt, tmp_path / "ckpt", kind="checkpoint"), job_id="ftjob-x")
    assert sorted(s.name for s in store.models.list()) == sorted([name, ckpt])
    assert store.models.delete(name) is True
    assert store.models.delete(name) is False
    assert [s.name for s in store.models.list()] == [ckpt]


def test_registry_resolves_builtins_and_registered_names(store, tmp_path):
    name = "ft:smollm2-135m-instruct:local:orders:AbCd1234"
    store.models.register(spec(name, tmp_path / "adapter"), job_id="ftjob-x")
    resolved = store.models.resolve(name)
    assert resolved.kind == "fine-tuned"
    assert resolved.adapter == tmp_path / "adapter"
    assert resolved.base == "smollm2-135m-instruct"
    assert store.models.resolve("smollm2-135m-instruct").kind == "builtin"


def test_registry_resolve_of_unknown_name_lists_known_names(store, tmp_path):
    name = "ft:smollm2-135m-instruct:local:orders:AbCd1234"
    store.models.register(spec(name, tmp_path / "adapter"), job_id=None)
    with pytest.raises(NotFoundError) as caught:
        store.models.resolve("ft:smollm2-135m-instruct:local:orders:AbCd1235")
    assert caught.value.status == 404
    assert caught.value.code == "model_not_found"
    assert "smollm2-135m-instruct" in str(caught.value)
    assert name in str(caught.value)


# --- deployments and tasks ------------------------------------------------------------------------


def test_a_deployment_is_created_replaced_and_keeps_its_model_registered(store, tmp_path):
    name = "ft:smollm2-135m-instruct:local:orders:AbCd1234"
    store.models.register(spec(name, tmp_path / "adapter"), job_id=None)
    sku = {"name": "standard", "capacity": 1}
    first, new = store.deployments.put("orders", name, sku, {"model": {"name": name}})
    assert (first.model, new) == (name, True)
    again, new = store.deployments.put("orders", name, {**sku, "capacity": 2}, {})
    assert (again.sku["capacity"], again.created_at, new) == (2, first.created_at, False)
    assert store.deployments.using(name) == ["orders"]
    with pytest.raises(TunesmithError) as caught:
        store.models.delete(name)
    assert caught.value.code == "model_in_use"
    assert store.deployments.delete("orders") is True
    assert store.models.delete(name) is True


def test_an_ended_task_is_deleted_with_its_events(store):
    task = store.exports.create({"format": "adapter"})
    store.exports.event(task.id, "half way")
    with pytest.raises(TunesmithError):
        store.exports.delete(task.id)  # still queued
    store.exports.move(task.id, "cancelled")
    store.exports.delete(task.id)
    with pytest.raises(NotFoundError):
        store.exports.get(task.id)
    assert store.query("SELECT * FROM export_events WHERE export_id = ?", [task.id]) == []
