"""`tunesmith serve` as a user starts it: on an engine with a server of its own it warms the
built-in model in the background, says so, and answers meanwhile; a warm-up that fails is logged
and the server goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tunesmith.infer.served import free_port

CLI = Path(sys.executable).parent / "tunesmith"


def test_a_server_engine_warms_the_built_in_model_and_a_failed_warm_up_stops_nothing(
    tunesmith_home, tmp_path
):
    # the vllm engine on a "fleet" address where nothing listens: serve starts (running servers
    # are to be used, none needs installing), its warm-up of the built-in model fails
    nobody = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    env = {**os.environ, "TUNESMITH_VLLM_URL": nobody, "COLUMNS": "400"}
    env.pop("TUNESMITH_VLLM_PYTHON", None)
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        server = subprocess.Popen(
            [str(CLI), "serve", "--port", str(port), "--workers", "0", "--engine", "vllm"],
            env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=30)
    try:
        deadline = time.monotonic() + 120
        while "Warming smollm2-135m-instruct failed" not in stderr.read_text():
            assert server.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.2)
        said = stderr.read_text()
        assert "Loading smollm2-135m-instruct in the background" in said
        assert f"No vLLM server answers at {nobody}" in said
        assert http.get("/models").status_code == 200  # still serving
    finally:
        http.close()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
