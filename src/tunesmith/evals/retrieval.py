"""Retrieval for RAG prompts: the built-in embedding model, a cosine index, document passages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunesmith.errors import TunesmithError
from tunesmith.models import embedding as _embedding
from tunesmith.models.embedding import BATCH_SIZE, Encoder, embed, embedding_model

__all__ = ["BATCH_SIZE", "Encoder", "Index", "Passage", "embed", "embedding_model"]

log = logging.getLogger(__name__)

EMBEDDING_PACKAGE = _embedding.EMBEDDING_PACKAGE  # here too: tests point it at a missing package
_QUERY_BLOCK = 1024  # queries scored at once: bounds the [queries, corpus] similarity matrix
_SNIFF_BYTES = 8192  # a NUL byte in a file's first 8 KiB means binary, as git and grep decide
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024  # larger files are data dumps or logs, not documents


def embedding_folder() -> Path:
    """The built-in embedding model's folder (models/embedding.py), for this module's package."""
    return _embedding.embedding_folder(EMBEDDING_PACKAGE)


class Index:
    """Texts embedded once; `search` returns the nearest by cosine similarity."""

    def __init__(self, texts: list[str], model: Encoder | None = None) -> None:
        self.texts = list(texts)
        self._model = model
        # [len(texts), dim], unit rows: a dot product is the cosine.
        self.vectors = embed(self.texts, model) if self.texts else np.zeros((0, 0), np.float32)

    def __len__(self) -> int:
        return len(self.texts)

    def search(self, queries: list[str], k: int) -> list[list[int]]:
        """For each query, the indices of the `k` most similar texts, most similar first.

        Fewer than `k` when the index is smaller; equal similarities go to the lower index, so the
        same inputs always give the same answer.
        """
        if not queries:
            return []
        k = min(k, len(self.texts))
        if k <= 0:
            return [[] for _ in queries]
        found: list[list[int]] = []
        query_vectors = embed(list(queries), self._model)  # [len(queries), dim]
        for start in range(0, len(queries), _QUERY_BLOCK):
            sims = query_vectors[start : start + _QUERY_BLOCK] @ self.vectors.T  # [block, n]
            # A stable sort of the negated similarities keeps ties in index order.
            order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            found.extend(row.tolist() for row in order)
        return found


@dataclass(frozen=True)
class Passage:
    """A chunk of one document: `source` is its path relative to the documents folder."""

    source: str
    text: str


def word_chunks(text: str, size: int = 120, overlap: int = 20) -> list[str]:
    """Runs of `size` words, each starting `size - overlap` words after the previous one.

    The last chunk ends at the text's end; a text of at most `size` words is one chunk, an empty
    text none.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"chunks need size >= 1 and 0 <= overlap < size, got {size}, {overlap}")
    words = text.split()
    if not words:
        return []
    step = size - overlap
    return [" ".join(words[i : i + size]) for i in range(0, max(len(words) - overlap, 1), step)]


def read_document(path: Path) -> str:
    """A file's text; ValueError (with the reason) for binary, undecodable or huge files."""
    if path.stat().st_size > MAX_DOCUMENT_BYTES:
        raise ValueError(f"larger than {MAX_DOCUMENT_BYTES // 2**20} MiB")
    data = path.read_bytes()
    if b"\0" in data[:_SNIFF_BYTES]:
        raise ValueError("binary file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _log_skip(path: Path, reason: str) -> None:
    log.warning("Skipping %s: %s", path, reason)


def _documents(folder: Path) -> list[Path]:
    """Every file under `folder`, sorted; hidden files and folders (.git, .DS_Store) left out."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def passages_from_dir(
    folder: str | Path,
    chunk_words: int = 120,
    overlap: int = 20,
    on_skip: Callable[[Path, str], None] = _log_skip,
) -> list[Passage]:
    """Overlapping word chunks of every text file under `folder` (for `--context-dir`).

    Any file that reads as UTF-8 text counts (.txt, .md, .csv, source code...). Binary, undecodable
    or unreadable files are passed to `on_skip(path, reason)` (by default a logged warning) and
    left out. Empty folders give an empty list.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise TunesmithError(f"{root} is not a folder.", param="context_dir")
    if chunk_words < 1 or not 0 <= overlap < chunk_words:
        raise TunesmithError(
            f"Passages need chunk_words >= 1 and 0 <= overlap < chunk_words "
            f"(got {chunk_words} and {overlap}).",
            param="chunk_words",
        )
    passages: list[Passage] = []
    for path in _documents(root):
        try:
            text = read_document(path)
        except (OSError, ValueError) as exc:
            on_skip(path, str(exc))
            continue
        source = path.relative_to(root).as_posix()
        passages.extend(Passage(source, c) for c in word_chunks(text, chunk_words, overlap))
    return passages
