"""Persistence: files, jobs, events, checkpoints and models in SQLite (WAL), grown by migrations."""

from tunesmith.store.db import Store, open_store

__all__ = ["Store", "open_store"]
