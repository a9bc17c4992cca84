"""The guard in front of every request (api/guard.py), against a live server: body limits, the
key checked before the body is read, the docs behind the key, Host and Origin checks."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from tunesmith.api.guard import is_loopback, split_host

KEY = "sk-right"
JOBS = "/fine_tuning/jobs"  # a JSON route outside chat: the body is parsed by FastAPI


def raw(url: str, head: str, body: bytes = b"", timeout: float = 10) -> tuple[int, dict]:
    """Send a request by hand (headers, then maybe the start of a body, never the rest) and
    read the answer: only a server that answers without waiting for the body passes."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def assert_openai_error(body: dict, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code


def chunks(total: int, size: int = 4096):
    """A JSON-ish body of `total` bytes as a generator, so httpx sends it chunked."""
    yield b'{"model": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


# --- body size ------------------------------------------------------------------------------------


def test_a_declared_body_past_the_limit_is_413_before_it_is_read(serve):
    url = serve(max_body_bytes=1000)
    port = urlsplit(url).port
    head = (
        f"POST /v1{JOBS} HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: application/json\n"
        "Content-Length: 10000000000\n"
    )
    status, body = raw(url, head)  # 10 GB announced, not one byte sent
    assert status == 413
    assert_openai_error(body, "request_too_large")
    assert "1,000-byte limit" in body["error"]["message"]


def test_a_chunked_body_past_the_limit_is_cut_off_with_413(serve):
    url = serve(max_body_bytes=10_000)
    refused = httpx.post(url + JOBS, content=chunks(50_000), timeout=30)
    assert "content-length" not in refused.request.headers
    assert refused.status_code == 413
    assert_openai_error(refused.json(), "request_too_large")
    assert refused.headers["x-should-retry"] == "false"
    # Under the limit the same route parses the body as usual.
    small = httpx.post(url + JOBS, json={"model": "x"}, timeout=30)
    assert small.status_code == 400 and small.json()["error"]["param"] == "training_file"


def test_uploads_keep_their_own_larger_limit(serve, client):
    url = serve(max_body_bytes=1000, max_upload_bytes=100_000)
    uploaded = client(url).files.create(file=("a.jsonl", b"x" * 50_000), purpose="fine-tune")
    assert uploaded.bytes == 50_000


# --- the key --------------------------------------------------------------------------------------


def test_the_key_is_checked_before_the_body_is_read(serve):
    url = serve(api_keys=[KEY])
    port = urlsplit(url).port
    head = (
        f"POST /v1{JOBS} HTTP/1.1\nHost: 127.0.0.1:{port}\nContent-Type: application/json\n"
        "Transfer-Encoding: chunked\n"
    )
    # The first chunk of a body that never ends: the 401 comes anyway.
    status, body = raw(url, head, b"1000\r\n" + b"x" * 100)
    assert status == 401
    assert_openai_error(body, "invalid_api_key")


def test_a_non_ascii_bearer_token_is_401_not_500(serve):
    url = serve(api_keys=[KEY])
    for token in ("ключ", "sk-right\u00e9", "\u2603"):
        answer = httpx.get(url + "/models", headers={"Authorization": f"Bearer {token}".encode()})
        assert answer.status_code == 401, token
        assert_openai_error(answer.json(), "invalid_api_key")


def test_a_non_ascii_key_is_accepted(serve):
    url = serve(api_keys=["sk-ключ"])
    answer = httpx.get(url + "/models", headers={"Authorization": "Bearer sk-ключ".encode()})
    assert answer.status_code == 200


def test_the_docs_need_the_key_unless_opened(serve):
    root = serve(api_keys=[KEY]).removesuffix("/v1")
    for path in ("/openapi.json", "/docs", "/redoc"):
        refused = httpx.get(root + path)
        assert refused.status_code == 401, path
        assert_openai_error(refused.json(), "invalid_api_key")
    allowed = httpx.get(root + "/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    assert allowed.status_code == 200 and "/v1/files" in allowed.json()["paths"]

    opened = serve(api_keys=[KEY], public_docs=True).removesuffix("/v1")
    assert httpx.get(opened + "/openapi.json").status_code == 200
    assert httpx.get(opened + "/docs").status_code == 200
    assert httpx.get(opened + "/v1/models").status_code == 401  # only the docs are opened


# --- Host and Origin ------------------------------------------------------------------------------


def test_a_forged_host_is_refused(serve):
    url = serve()
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.evil", ""):
        refused = httpx.get(url + "/models", headers={"Host": host})
        assert refused.status_code == 403, host
        assert_openai_error(refused.json(), "host_not_allowed")
    port = urlsplit(url).port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"127.8.9.10:{port}", "LOCALHOST"):
        assert httpx.get(url + "/models", headers={"Host": host}).status_code == 200, host


def test_listed_hosts_and_the_wildcard_are_allowed(serve):
    listed = serve(allowed_hosts=["tunesmith.lan"])
    assert httpx.get(listed + "/models", headers={"Host": "tunesmith.lan"}).status_code == 200
    assert httpx.get(listed + "/models", headers={"Host": "other.lan"}).status_code == 403
    anything = serve(allowed_hosts=["*"])
    assert httpx.get(anything + "/models", headers={"Host": "other.lan"}).status_code == 200


def test_a_cross_site_post_is_refused(serve):
    url = serve()
    port = urlsplit(url).port
    for origin in ("http://evil.example", f"http://localhost:{port + 1}", "null"):
        refused = httpx.post(url + JOBS, json={}, headers={"Origin": origin})
        assert refused.status_code == 403, origin
        assert_openai_error(refused.json(), "origin_not_allowed")
        deleted = httpx.delete(url + "/files/file-x", headers={"Origin": origin})
        assert deleted.status_code == 403, origin
    # A page served by this server itself, and reads from anywhere (a browser would not let
    # another site read the answer), go through to the route.
    same = httpx.post(url + JOBS, json={}, headers={"Origin": f"http://127.0.0.1:{port}"})
    assert same.status_code == 400 and same.json()["error"]["param"] == "model"  # the route's
    read = httpx.get(url + "/models", headers={"Origin": "http://evil.example"})
    assert read.status_code == 200


def test_the_official_sdk_is_unaffected(serve, client):
    sdk = client(serve(api_keys=[KEY], max_body_bytes=1000), api_key=KEY)
    assert sdk.models.list().data
    uploaded = sdk.files.create(file=("a.jsonl", b"{}\n" * 1000), purpose="fine-tune")
    assert sdk.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.fine_tuning.jobs.retrieve("ftjob-nope")


# --- the parsing underneath -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("Example.COM", ("example.com", 80)),
        ("[::1]:9", ("::1", 9)),
        ("host:notaport", (None, None)),
        ("[::1", (None, None)),
        ("", (None, 80)),
    ],
)
def test_split_host(header, expected):
    assert split_host(header, "http") == expected


def test_loopback_names():
    assert all(map(is_loopback, ["localhost", "127.0.0.1", "127.255.0.9", "::1"]))
    assert not any(map(is_loopback, ["localhost.evil", "10.0.0.1", "0.0.0.0", "::", "example"]))
