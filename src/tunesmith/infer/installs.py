"""What the engines on a model server install once per machine (llama_server.py builds
llama-server, vllm_server.py makes vLLM's virtualenv): where it is kept, each step run with its
failure said, and the `python -m` entry point that installs it now."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tunesmith.errors import TunesmithError

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunesmith"


def step(*command: str, doing: str, instead: str) -> None:
    """Run one step of an install; a failure is a TunesmithError with its output's tail.
    `doing`: what fails ("Building llama-server"); `instead`: the way round it."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise TunesmithError(
            f"{doing} failed at `{' '.join(command[:5])} ...`:\n"
            f"{(done.stdout + done.stderr)[-2000:]}",
            f"Fix the cause above, or {instead}.",
        )


def main(install: Callable[[], Path]) -> None:
    """`python -m tunesmith.infer.…`: install now and print where, or say why not."""
    try:
        print(install())
    except TunesmithError as exc:
        sys.exit(f"{exc.message}\n{exc.hint}")
