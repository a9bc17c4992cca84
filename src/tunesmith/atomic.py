"""Files that appear whole or not at all: written beside their target, then renamed over it.

A home folder may be shared by several hosts (README, "Scaling out"): another host reading a
report or an export while it is written sees the previous file or the finished one, never half
of one. os.replace is atomic within one folder, on local disks and on NFS alike.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """A temporary file next to `target`, moved over it only when the block ends without error,
    so an interrupted write never leaves a file that looks finished."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    partial = Path(name)
    try:
        yield partial
        with partial.open("rb") as written:  # on disk before the name: a crash keeps one whole
            os.fsync(written.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def write_text(target: Path, text: str) -> None:
    with atomic_file(target) as partial:
        partial.write_text(text, encoding="utf-8")
