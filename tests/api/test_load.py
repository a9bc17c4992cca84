"""A bounded loopback load test: hundreds of chat requests in flight against one live server,
mixed with file uploads, fine-tuning job submissions and job polls.

It shows that decoding holds no thread per request (job polling stays quick while the batch is
full) and that serving leaks no memory per request. The figures it prints (`pytest -s`) are the
ones the README quotes. The server runs in this test's process (tests/api/conftest.py), so the
process's RSS is the server's.
"""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest

CHATS = 500
IN_FLIGHT = 32
MAX_TOKENS = 8  # short answers: the test measures serving, not the model
WARM_UP = 64  # chats before the first RSS sample: model loaded, caches and pools filled
UPLOAD_EVERY = 10  # one file upload per this many chats
JOB_EVERY = 50  # one fine-tuning job submission per this many chats
POLL_PAUSE = 0.05  # seconds between two polls of the job

P99_POLL_SECONDS = 2.0
RSS_GROWTH_MB = 150

pytestmark = pytest.mark.slow


def chat(sdk, model: str, i: int) -> int:
    messages = [{"role": "user", "content": f"Request {i}: name three colors."}]
    reply = sdk.chat.completions.create(
        model=model, messages=messages, max_tokens=MAX_TOKENS, temperature=0
    )
    return reply.usage.completion_tokens


def upload(sdk, data: bytes) -> str:
    return sdk.files.create(file=("train.jsonl", data), purpose="fine-tune").id


class Poller(threading.Thread):
    """Polls one job until stopped, recording how long each poll took."""

    def __init__(self, sdk, job_id: str) -> None:
        super().__init__(daemon=True)
        self.sdk, self.job_id = sdk, job_id
        self.latencies: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            started = time.monotonic()
            self.sdk.fine_tuning.jobs.retrieve(self.job_id)
            self.latencies.append(time.monotonic() - started)
            self.stopped.wait(POLL_PAUSE)


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def test_chat_under_load_leaves_the_api_responsive_and_memory_flat(
    serve, client, tiny_model_dir, orders
):
    sdk = client(serve(workers=0, model_dirs=[tiny_model_dir.parent]))  # jobs wait in the queue
    model = str(tiny_model_dir)
    data = (orders / "validation.jsonl").read_bytes()
    job = sdk.fine_tuning.jobs.create(
        model="smollm2-135m-instruct", training_file=upload(sdk, data)
    )

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        assert all(pool.map(lambda i: chat(sdk, model, i), range(WARM_UP)))
        rss_start = rss_mb()
        poller = Poller(sdk, job.id)
        poller.start()
        started = time.monotonic()
        futures = [pool.submit(chat, sdk, model, i) for i in range(WARM_UP, CHATS)]
        for i in range(0, CHATS - WARM_UP, UPLOAD_EVERY):
            file_id = upload(sdk, data)
            if i % JOB_EVERY == 0:
                sdk.fine_tuning.jobs.create(model="smollm2-135m-instruct", training_file=file_id)
        tokens = [f.result() for f in futures]  # raises if any request failed
        seconds = time.monotonic() - started
        poller.stopped.set()
        poller.join()
    rss_end = rss_mb()

    p50, p99 = np.quantile(poller.latencies, [0.5, 0.99])
    print(
        f"\nload: {CHATS} chat requests ({MAX_TOKENS} tokens each), {IN_FLIGHT} in flight, "
        f"{CHATS - WARM_UP} after warm-up in {seconds:.1f} s "
        f"({(CHATS - WARM_UP) / seconds:.1f} requests/s)\n"
        f"job polls during the load: {len(poller.latencies)}, "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms\n"
        f"server RSS: {rss_start:.0f} MB after warm-up, {rss_end:.0f} MB at the end "
        f"({rss_end - rss_start:+.0f} MB)"
    )
    assert all(t == MAX_TOKENS for t in tokens)
    assert len(poller.latencies) > 10
    assert p99 < P99_POLL_SECONDS
    assert rss_end - rss_start < RSS_GROWTH_MB
