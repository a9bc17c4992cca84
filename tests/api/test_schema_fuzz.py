"""Schemathesis against a live server: no request generated from /openapi.json gets a 5xx, and
every refusal is OpenAI's error JSON.

Every deterministic failure must be a 4xx with OpenAI's error JSON (the SDK retries 5xx). The
requests are generated from the schema, valid ones and invalid ones (wrong types, missing fields,
odd path parameters), up to MAX_EXAMPLES per operation; the number sent is printed when pytest
ends. The schema is read from the app when the module is collected (Schemathesis makes one test
per operation), and the live server is checked to serve that same schema.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tunesmith.api.app import create_app
from tunesmith.settings import Settings

MAX_EXAMPLES = 10  # per operation and generation mode (valid, invalid): ~1,000 requests in all
GENERATING = ("/v1/chat/completions", "/v1/completions")
REPLY_SECONDS = 60  # a hung request fails its case instead of the whole run
SENT: Counter[str] = Counter()  # requests per operation
STATUSES: Counter[int] = Counter()  # how they were answered
OPENAPI = create_app(Settings()).openapi()  # no lifespan: nothing starts, nothing is written
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def base_url(serve_module, tiny_model_dir, request: pytest.FixtureRequest) -> str:
    """One live server for every operation: no workers (a job waits in the queue, nothing
    trains), and the tiny model's folder may be named."""
    url = serve_module(model_dirs=[tiny_model_dir]).removesuffix("/v1")
    assert httpx.get(f"{url}/openapi.json").json() == OPENAPI
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        request.config.add_cleanup(lambda: reporter.write_line(summary()))
    return url


@pytest.fixture(scope="module")
def known(base_url, tiny_model_dir) -> dict[str, str]:
    """Body fields that name things which exist on the server: a model and an uploaded file."""
    chat = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi."}]
    data = "".join(json.dumps({"messages": chat}) + "\n" for _ in range(12))
    uploaded = httpx.post(
        f"{base_url}/v1/files",
        files={"file": ("train.jsonl", data.encode())},
        data={"purpose": "fine-tune"},
    )
    file_id = uploaded.json()["id"]
    return {
        "model": str(tiny_model_dir),
        "training_file": file_id,
        "validation_file": file_id,
        "test_file": file_id,
    }


def deepen(case, known: dict[str, str]) -> None:
    """Half the generated bodies get a model and files that exist, so that a request gets past
    the 404 for a random name into the code behind it. Replies stay short: it is the tiny model
    on a CPU, and a reply of its whole context (2,048 tokens, the default) takes minutes."""
    body = case.body
    if not isinstance(body, dict) or zlib.crc32(repr(body).encode()) % 2:
        return
    body.update({key: value for key, value in known.items() if key in body})
    if case.operation.path in GENERATING:
        for key in ("max_tokens", "max_completion_tokens"):
            body[key] = short(body.get(key), 8)
        body["n"] = short(body.get("n"), 2)


def short(value: object, most: int) -> object:
    """An integer capped at `most` (absent: `most`); anything else as generated, to be refused."""
    if value is None:
        return most
    if isinstance(value, int) and not isinstance(value, bool):
        return min(value, most)
    return value


def summary() -> str:
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(STATUSES.items()))
    operations = ", ".join(f"{label} {n}" for label, n in sorted(SENT.items()))
    return (
        f"schemathesis: {sum(SENT.values())} requests over {len(SENT)} operations, answered "
        f"{statuses} ({operations})"
    )


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_request_gets_a_server_error(case, base_url, known):
    deepen(case, known)
    SENT[case.operation.label] += 1
    response = case.call(base_url=base_url, timeout=REPLY_SECONDS)
    STATUSES[response.status_code] += 1
    case.validate_response(response, checks=[not_a_server_error, openai_error_json])


def openai_error_json(ctx, response, case) -> None:
    """A refusal is OpenAI's error JSON, all four keys present: the SDK reads them."""
    if response.status_code >= 400:
        error = response.json().get("error")
        keys = set(error) if isinstance(error, dict) else set()
        assert keys == {"message", "type", "param", "code"}, response.text[:300]
