"""Files API through the official SDK: upload (streamed, size-limited), list, retrieve, content,
delete."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from tunesmith.store import open_store

BOUNDARY = "tunesmith-test-boundary"


def stored_files(home: Path) -> list[str]:
    """Every name in the files folder, hidden `.part` files included, each kept file named by
    its id (the client's suffix, `file-….jsonl`, dropped)."""
    folder = home / "files"
    if not folder.exists():
        return []
    return sorted(p.name if p.name.startswith(".") else p.stem for p in folder.iterdir())


def multipart(file_bytes: bytes, purpose: str = "fine-tune", chunk: int = 4096):
    """A multipart body as a generator, so httpx sends it chunked, without Content-Length."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for start in range(0, len(file_bytes), chunk):
        yield file_bytes[start : start + chunk]
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def post_chunked(url: str, body) -> httpx.Response:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    return httpx.post(f"{url}/files", content=body, headers=headers, timeout=30)


# --- the whole round trip -------------------------------------------------------------------------


def test_upload_list_retrieve_content_delete(sdk, orders, tunesmith_home):
    train, valid = orders / "train.jsonl", orders / "validation.jsonl"
    with open(train, "rb") as f:
        a = sdk.files.create(file=f, purpose="fine-tune")
    with open(valid, "rb") as f:
        b = sdk.files.create(file=f, purpose="fine-tune")

    assert a.id.startswith("file-") and b.id.startswith("file-") and a.id != b.id
    assert (a.object, a.filename, a.purpose, a.status) == (
        "file",
        "train.jsonl",
        "fine-tune",
        "processed",
    )
    assert a.bytes == train.stat().st_size and isinstance(a.created_at, int)
    assert sdk.files.wait_for_processing(a.id).status == "processed"

    # Stored by id under the home folder (with the client's suffix), never by the client's name.
    assert stored_files(tunesmith_home) == sorted([a.id, b.id])
    assert (tunesmith_home / "files" / f"{a.id}.jsonl").read_bytes() == train.read_bytes()
    assert not list(tunesmith_home.rglob("train.jsonl"))

    assert sdk.files.retrieve(a.id) == a
    content = sdk.files.content(a.id)
    assert content.read() == train.read_bytes()
    assert content.response.headers["content-type"] == "application/octet-stream"

    listed = sdk.files.list()
    assert {f.id for f in listed.data} == {a.id, b.id}
    assert listed.has_more is False
    newest_first = [f.id for f in listed.data]
    assert [f.id for f in sdk.files.list(order="asc").data] == newest_first[::-1]
    first = sdk.files.list(limit=1)
    assert first.has_more is True and first.data[0].id == newest_first[0]
    assert [f.id for f in sdk.files.list(limit=1, after=first.data[0].id).data] == newest_first[1:]

    deleted = sdk.files.delete(a.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (a.id, "file", True)
    assert stored_files(tunesmith_home) == [b.id]
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(a.id)
    with pytest.raises(openai.NotFoundError):
        sdk.files.delete(a.id)


def test_purpose_filter_filename_and_expiry(sdk):
    batch = sdk.files.create(file=("../../etc/batch.jsonl", b"{}\n"), purpose="batch")
    tune = sdk.files.create(
        file=("t.jsonl", b"{}\n"),
        purpose="fine-tune",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert batch.filename == "batch.jsonl"  # only the name is kept, for display
    assert batch.expires_at is None
    assert tune.expires_at == tune.created_at + 3600
    assert [f.id for f in sdk.files.list(purpose="fine-tune").data] == [tune.id]
    assert [f.id for f in sdk.files.list(purpose="batch").data] == [batch.id]


def test_unknown_file_is_404(sdk):
    for call in (sdk.files.retrieve, sdk.files.content, sdk.files.delete):
        with pytest.raises(openai.NotFoundError) as caught:
            call("file-nope")
        assert caught.value.body["param"] == "file_id"


def test_file_of_an_unfinished_job_is_not_deleted(sdk, tunesmith_home):
    file = sdk.files.create(file=("t.jsonl", b"{}\n"), purpose="fine-tune")
    store = open_store()
    job = store.jobs.create(
        model="smollm2-135m-instruct",
        training_file=file.id,
        validation_file=None,
        suffix=None,
        seed=1,
        metadata=None,
        method={"type": "supervised"},
        config={},
    )
    job = store.jobs.move(job.id, "queued")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.delete(file.id)
    assert caught.value.code == "file_in_use" and job.id in caught.value.message
    sdk.fine_tuning.jobs.cancel(job.id)
    assert sdk.files.delete(file.id).deleted is True
    store.close()


# --- refusals -------------------------------------------------------------------------------------


def test_bad_or_missing_purpose_and_missing_file_are_400(sdk, tunesmith_home):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.create(file=("t.jsonl", b"{}\n"), purpose="homework")
    assert caught.value.param == "purpose"
    assert "'homework' is not a valid purpose" in caught.value.message

    url = str(sdk.base_url).rstrip("/")
    no_purpose = httpx.post(f"{url}/files", files={"file": ("t.jsonl", b"{}\n")})
    assert no_purpose.status_code == 400
    assert no_purpose.json()["error"]["param"] == "purpose"

    no_file = httpx.post(f"{url}/files", data={"purpose": "fine-tune"}, files={"x": b"1"})
    assert no_file.status_code == 400
    assert no_file.json()["error"]["param"] == "file"

    not_multipart = httpx.post(f"{url}/files", json={"purpose": "fine-tune"})
    assert not_multipart.status_code == 400

    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.create(
            file=("t.jsonl", b"{}\n"),
            purpose="fine-tune",
            expires_after={"anchor": "created_at", "seconds": 10},
        )
    assert caught.value.param == "expires_after.seconds"
    assert stored_files(tunesmith_home) == []  # nothing kept from any refused upload


def test_upload_over_the_limit_is_413_by_content_length(serve, client, tunesmith_home):
    url = serve(max_upload_bytes=1000)
    sdk = client(url)
    small = sdk.files.create(file=("ok.jsonl", b"x" * 1000), purpose="fine-tune")
    assert small.bytes == 1000

    # Content-Length alone is past the limit (plus room for the form around the file): refused
    # before the body is read.
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.files.create(file=("big.jsonl", b"x" * 200_000), purpose="fine-tune")
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "file_too_large"
    assert caught.value.body["param"] == "file"

    # The refusal comes at once: a request that announces 1 GB and sends no body gets its 413.
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n\r\n"
        )
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413")

    assert stored_files(tunesmith_home) == [small.id]
    assert [f.id for f in sdk.files.list().data] == [small.id]


def test_chunked_upload_over_the_limit_is_413_mid_stream(serve, tunesmith_home):
    url = serve(max_upload_bytes=1000)
    fits = post_chunked(url, multipart(b"y" * 1000, chunk=100))
    assert fits.status_code == 200, fits.text
    assert fits.json()["bytes"] == 1000

    refused = post_chunked(url, multipart(b"z" * 50_000))
    assert "content-length" not in refused.request.headers
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "file_too_large"
    assert refused.headers["x-should-retry"] == "false"

    # No partial file and no row; the server goes on serving.
    assert stored_files(tunesmith_home) == [fits.json()["id"]]
    listed = httpx.get(f"{url}/files").json()
    assert [f["id"] for f in listed["data"]] == [fits.json()["id"]]


def test_upload_with_bad_purpose_after_the_file_leaves_nothing(serve, tunesmith_home):
    """Parts can come in any order: a purpose sent after the file is checked at the end."""
    url = serve()
    body = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
        f"{json.dumps({'messages': []})}\r\n"
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nnope\r\n'
        f"--{BOUNDARY}--\r\n"
    ).encode()
    response = post_chunked(url, iter([body]))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "purpose"
    assert stored_files(tunesmith_home) == []

    cut_off = post_chunked(url, iter([body[:-30]]))  # no closing boundary
    assert cut_off.status_code == 400
    assert stored_files(tunesmith_home) == []
