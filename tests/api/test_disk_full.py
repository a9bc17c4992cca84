"""A full disk during an upload: a 507 with OpenAI's error JSON, nothing half-written kept, and
the server goes on. (A full disk during a checkpoint: tests/train/test_run.py.)"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _limit_file_size() -> None:
    # Writes past 2 MB fail with EFBIG, as on a full disk, instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))


def test_a_full_disk_during_an_upload_keeps_nothing(tunesmith_home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = Path(sys.executable).parent / "tunesmith"
    server = subprocess.Popen(
        [str(cli), "serve", "--port", str(port), "--workers", "0"],
        env=os.environ.copy(), preexec_fn=_limit_file_size,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                http.get("/models")
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        big = b'{"messages": []}\n' * 250_000  # 4.25 MB: past the limit
        refused = http.post(
            "/files", files={"file": ("big.jsonl", big)}, data={"purpose": "fine-tune"}
        )
        assert refused.status_code == 507, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("disk_full", "file")
        assert http.get("/files").json()["data"] == []
        assert not [p for p in (tunesmith_home / "files").iterdir()]  # no .part, no file
        small = http.post(
            "/files", files={"file": ("s.jsonl", b"{}\n")}, data={"purpose": "fine-tune"}
        )
        assert small.status_code == 200 and len(http.get("/files").json()["data"]) == 1
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
