"""What the data page reads from the data room: raw lines, a file's inspection with a length
histogram, and an example as token pieces with the loss marked, on the real SmolLM2 tokenizer."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunesmith.data.browse import file_lines, inspect, render_example
from tunesmith.data.records import Conversation
from tunesmith.data.render import IGNORE, encode, token_pieces
from tunesmith.data.stats import ExampleTokens, length_histogram
from tunesmith.errors import TunesmithError

FILES = Path(__file__).parent / "files"


def lengths(*values: int) -> list[ExampleTokens]:
    return [
        ExampleTokens(line=i, lengths=(n,), assistant=1, messages=2) for i, n in enumerate(values)
    ]


def test_the_histogram_bins_whole_tokens_and_counts_every_example():
    histogram = length_histogram(lengths(10, 11, 19, 30, 40), bins=3)
    assert histogram.edges == [10, 21, 32, 43]
    assert histogram.counts == [3, 1, 1]
    # Fewer distinct lengths than bins: one bin per length, none empty at the end.
    assert length_histogram(lengths(5, 5, 6), bins=10).counts == [2, 1]
    assert length_histogram([]).counts == []


def test_a_pair_counts_by_its_longer_side():
    pair = ExampleTokens(line=1, lengths=(7, 50), assistant=3, messages=2, prompt=5)
    assert length_histogram([pair]).edges[0] == 50


def test_lines_are_numbered_as_the_reports_number_them(tmp_path: Path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\r\n{"b": "x\xe2\x80\xa8y"}\n')
    lines, total = file_lines(path, 2, 5)
    assert total == 3
    assert lines == [(2, ""), (3, '{"b": "x\u2028y"}')]  # U+2028 does not split a line


def test_a_parquet_files_lines_are_its_rows_as_json(tmp_path: Path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"q": ["hi", "yo"], "n": [1, 2]}), path)
    assert file_lines(path, 2) == ([(2, '{"q": "yo", "n": 2}')], 2)


def test_a_table_without_a_mapping_is_an_inspection_with_its_columns(tokenizer):
    found = inspect(FILES / "qa.csv", tokenizer)
    assert found.report is None and found.columns == ["question", "answer", "topic"]
    assert found.problem is not None and "cannot be guessed" in found.problem.message
    mapped = inspect(
        FILES / "qa.csv", tokenizer, mapping={"user": "question", "assistant": "answer"}
    )
    assert mapped.report is not None and mapped.report.stats is not None
    assert sum(mapped.histogram.counts) == mapped.report.stats.n_examples
    with pytest.raises(TunesmithError) as bad:
        inspect(FILES / "qa.csv", tokenizer, mapping={"user": "q", "assistant": "answer"})
    assert bad.value.param == "mapping"


def test_token_pieces_join_to_the_text_and_mark_the_loss_tokens(tokenizer):
    conversation = Conversation.model_validate(
        {
            "messages": [
                {"role": "user", "content": "héllo 日本語 🎉"},
                {"role": "assistant", "content": "über 🎉 日本"},
            ]
        }
    )
    encoded = encode(tokenizer, conversation)
    pieces = token_pieces(tokenizer, encoded)
    assert len(pieces) == len(encoded.input_ids)
    assert "".join(text for text, _ in pieces) == tokenizer.decode(encoded.input_ids)
    assert [loss for _, loss in pieces] == [label != IGNORE for label in encoded.labels]
    assert "".join(text for text, loss in pieces if loss) == "über 🎉 日本<|im_end|>"


def test_a_pair_renders_both_sides_with_the_loss_on_each_answer(tokenizer):
    rendered = render_example(FILES / "dpo.jsonl", tokenizer, 0)
    assert rendered.kind == "pairs" and rendered.line == 1
    chosen, rejected = rendered.sequences
    assert (chosen.name, rejected.name) == ("chosen", "rejected")
    assert "".join(t for t, loss in chosen.tokens if loss) == "Hello! How can I help?<|im_end|>"
    assert "".join(t for t, loss in rejected.tokens if loss) == "What.<|im_end|>"
    assert "Greet me." in "".join(t for t, loss in chosen.tokens if not loss)


def test_an_index_past_the_examples_is_refused_by_name(tokenizer):
    with pytest.raises(TunesmithError) as refused:
        render_example(FILES / "chat.jsonl", tokenizer, 10_000)
    assert refused.value.param == "index"
