"""llama.cpp's own `llama-server` program, for the llamacpp engine and the serving bench: found on
this machine or built once from the llama.cpp source that the llama-cpp-python sdist vendors.

Why the program and not llama-cpp-python's bindings: its high-level `Llama` decodes one sequence
at a time and takes LoRA adapters per context, so a server on it would lose both continuous
batching and per-request adapters; `llama-server` has both (`-np` slots, the `lora` field of a
request). The sdist is the same source the `llama-cpp-python` extra would compile.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.infer import installs
from tunesmith.infer.installs import CACHE, step

LLAMA_CPP_PYTHON = "0.3.36"  # the sdist whose vendored llama.cpp is built
PATCH_LEVEL = 1  # tunesmith's change to it (STREAM_EVERY_TOKEN); a new level builds anew
BUILT = CACHE / f"llama-server-{LLAMA_CPP_PYTHON}-ts{PATCH_LEVEL}" / "llama-server"
ENV = "TUNESMITH_LLAMA_SERVER"  # a llama-server binary to use instead of the built one

# llama-server holds back a streamed token that ends inside a UTF-8 character until the character
# is whole, then streams only the token that completed it: the ids (and log-probs) of the ones
# held back are never sent. The engine counts, stops and guides on ids, so the patch streams
# every token, the held-back ones with no text yet (their text arrives with the next token's).
# Only requests that ask for `return_tokens` (tunesmith's) change.
STREAM_EVERY_TOKEN = (
    "tools/server/server-context.cpp",
    """        if (incomplete) {
            slot.has_next_token = true;
        }
""",
    """        if (incomplete) {
            slot.has_next_token = true;
            if (slot.task->params.stream && slot.task->params.return_tokens) {
                result.text_to_send = "";
                slot.add_token(result);
                send_partial_response(slot, result, false);
            }
        }
""",
)


def find() -> Path | None:
    """The binary to run: TUNESMITH_LLAMA_SERVER, else the one built here. Not one on PATH: one
    without the patch above loses the ids of tokens that end inside a character."""
    named = os.environ.get(ENV)
    if named:
        return Path(named)
    return BUILT if BUILT.exists() else None


def require() -> Path:
    """The binary to run, or a TunesmithError saying how to get one."""
    binary = find()
    if binary is None:
        raise TunesmithError(
            "The llamacpp engine needs llama-server, and none is built on this machine.",
            f"Run `make llama-server` once (about 8 minutes on 2 cores), or point {ENV} at a "
            "llama-server binary.",
        )
    return binary


def cpu_args() -> list[str]:
    """Flags this CPU needs. Repacking puts Q4 weights on the AMX kernels; where the CPU lists AMX
    but the kernel or sandbox does not grant its tile state (seen on this project's bf16 machine
    kind), the first matmul dies with SIGILL (`tilezero`). Without repacking it runs AVX-512."""
    cpuinfo = Path("/proc/cpuinfo")
    return ["--no-repack"] if cpuinfo.exists() and "amx_tile" in cpuinfo.read_text() else []


def build(say: Callable[[str], None] = print) -> Path:
    """Build `llama-server` once with this CPU's instructions (GGML_NATIVE) and cache it; a few
    minutes on two cores. Raises TunesmithError with the reason where it cannot be built."""
    if BUILT.exists():
        return BUILT
    missing = [tool for tool in ("cmake", "cc", "c++") if shutil.which(tool) is None]
    if missing:
        raise TunesmithError(
            f"llama-server cannot be built here: no {', '.join(missing)} on PATH.",
            f"Install a C++ compiler and cmake (Debian: apt-get install build-essential cmake), "
            f"or point {ENV} at a llama-server binary.",
        )
    say(f"Building llama-server from the llama-cpp-python {LLAMA_CPP_PYTHON} sdist, once ...")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tunesmith-llama-") as tmp:
        work, out = Path(tmp), Path(tmp) / "build"
        # --no-binary for this package only: its build requirements (only read for the
        # metadata, here) still come as wheels
        _step(
            sys.executable, "-m", "pip", "download", "--no-binary", "llama-cpp-python", "--no-deps",
            f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(work), "--quiet",
        )  # fmt: skip
        (sdist,) = work.glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        (source,) = work.glob("llama_cpp_python-*/vendor/llama.cpp")
        patch(source, *STREAM_EVERY_TOKEN)
        # Static libraries: the one binary is all the cache keeps. No web UI (its prebuilt
        # assets are a download) and no HTTPS: tunesmith talks to it over loopback HTTP.
        _step(
            "cmake", "-S", str(source), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_BUILD_SERVER=ON", "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF",
            "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF",
        )  # fmt: skip
        _step("cmake", "--build", str(out), "--target", "llama-server", "-j", str(os.cpu_count()))
        BUILT.parent.mkdir(parents=True, exist_ok=True)
        partial = BUILT.with_name(".llama-server.partial")
        shutil.copy2(out / "bin" / "llama-server", partial)
        partial.replace(BUILT)  # a build killed halfway leaves no binary that looks whole
    say(f"Built in {time.perf_counter() - started:.0f} s, cached as {BUILT}")
    return BUILT


def patch(source: Path, file: str, before: str, after: str) -> None:
    path = source / file
    text = path.read_text()
    if text.count(before) != 1:
        raise TunesmithError(
            f"llama.cpp's {file} is not the one tunesmith's patch was written for.",
            f"Build from the llama-cpp-python {LLAMA_CPP_PYTHON} sdist, as `make llama-server` does.",
        )
    path.write_text(text.replace(before, after))


def _step(*command: str) -> None:
    step(*command, doing="Building llama-server", instead=f"point {ENV} at a llama-server binary")


def main() -> None:
    """`python -m tunesmith.infer.llama_server`: build it now (`make llama-server`)."""
    installs.main(build)


if __name__ == "__main__":
    main()
