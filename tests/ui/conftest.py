"""Browser tests: Debian's chromium, driven headless by Playwright, against a live `tunesmith serve`.

    def test_something(ui, page):
        page.goto(ui.url)                      # the UI at / of a server with one worker
        page.get_by_role("link", name="Jobs").click()
        ui.sdk.files.list()                    # the official SDK on the same server, to arrange

`ui` is one server for the whole session (one worker, no key, its own home), so a model trained
by one test is there for the next; `page` is a fresh browser context per test (its own
sessionStorage) at 1280x800, and fails the test on any console error or uncaught exception the
page logs, except messages matching a pattern the test adds to `expected_console`.
`keyed_ui` is a second server, one that needs the key `keyed_ui.key`. `shot(page, name)` saves a screenshot
into docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import io
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

KEY = "sk-ui-test"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TIMEOUT_MS = 30_000


@dataclass
class UIServer:
    url: str  # the UI's address: http://127.0.0.1:PORT (the API is under /v1)
    sdk: openai.OpenAI  # the official SDK on the same server, to arrange and to check state
    key: str | None  # the key the server needs, if any


def _ui_server(serve: Callable[..., str], **settings) -> Iterator[UIServer]:
    api_url = serve(**settings)
    key = (settings.get("api_keys") or [None])[0]
    sdk = openai.OpenAI(base_url=api_url, api_key=key or "none", max_retries=0, timeout=120)
    yield UIServer(url=api_url.removesuffix("/v1"), sdk=sdk, key=key)
    sdk.close()


@pytest.fixture(scope="session")
def ui(serve_session: Callable[..., str]) -> Iterator[UIServer]:
    yield from _ui_server(serve_session, workers=1)


@pytest.fixture(scope="session")
def keyed_ui(serve_session: Callable[..., str]) -> Iterator[UIServer]:
    yield from _ui_server(serve_session, workers=0, api_keys=[KEY])


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if CHROMIUM is None:  # `make test` installs it; a bare pytest run on a new machine may not
        pytest.fail("chromium is not installed: run `make test`, or `apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def expected_console() -> list[str]:
    """Regular expressions of console messages this test expects (e.g. a refused key's 401)."""
    return []


@pytest.fixture
def page(browser, expected_console: list[str]) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    yield page
    context.close()
    unexpected = [p for p in problems if not any(re.search(e, p) for e in expected_console)]
    assert not unexpected, f"the page logged errors: {unexpected}"


@pytest.fixture
def shot() -> Callable:
    def save(page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


@dataclass
class TrainedModel:
    name: str  # the fine_tuned_model, ft:…
    job: object  # the SDK's FineTuningJob that made it


def train_tiny(ui: UIServer, suffix: str, batch_size: int) -> object:
    """Train a LoRA on the first 10 orders examples (OpenAI's minimum) through the API, wait for
    it, and return the SDK's finished job; 10 / batch_size steps."""
    orders = Path(__file__).resolve().parents[2] / "src/tunesmith/tasks/orders/train.jsonl"
    lines = orders.read_text().splitlines()[:10]
    file = ui.sdk.files.create(
        file=(f"{suffix}.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="fine-tune"
    )
    job = ui.sdk.fine_tuning.jobs.create(
        training_file=file.id,
        model="smollm2-135m-instruct",
        hyperparameters={"n_epochs": 1, "batch_size": batch_size},
        suffix=suffix,
    )
    deadline = time.monotonic() + 600
    while job.status not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(1)
        job = ui.sdk.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", f"the job {suffix!r} ended {job.status}: {job.error}"
    return job


@pytest.fixture(scope="session")
def trained_model(ui: UIServer) -> TrainedModel:
    """A real fine-tuned model for the pages that chat with, export or compare one: two LoRA steps
    on 10 orders examples, trained through the API on the session server."""
    job = train_tiny(ui, "ui", batch_size=5)
    return TrainedModel(name=job.fine_tuned_model, job=job)


@pytest.fixture
def throwaway_model(ui: UIServer) -> str:
    """A fine-tuned model of this test's own (one step), for a test that deletes it."""
    return train_tiny(ui, "throwaway", batch_size=10).fine_tuned_model
