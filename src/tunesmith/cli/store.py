"""The store as the CLI opens it: once per command, in the home folder."""

from __future__ import annotations

from functools import lru_cache

from tunesmith.store import Store, open_store


@lru_cache(maxsize=1)
def store() -> Store:
    return open_store()
