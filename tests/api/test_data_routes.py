"""The data inspection endpoints on a live server: check, lines, render, convert and split of
uploaded files, with the built-in model's real tokenizer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunesmith.data.readers import read
from tunesmith.data.render import IGNORE, encode

QA_CSV = "question,answer\n" + "".join(f"What is {i} + {i}?,{2 * i}\n" for i in range(12))


@pytest.fixture(scope="module")
def api(serve_module: Callable[..., str]) -> httpx.Client:
    with httpx.Client(base_url=serve_module(), timeout=120) as client:
        yield client


def upload(api: httpx.Client, path: Path) -> str:
    with open(path, "rb") as f:
        response = api.post("/files", files={"file": (path.name, f)}, data={"purpose": "fine-tune"})
    assert response.status_code == 200, response.text
    return response.json()["id"]


@pytest.fixture
def bad_file(tmp_path: Path, orders: Path) -> Path:
    """Orders examples with line 3 broken JSON and line 5 missing its assistant message."""
    lines = (orders / "train.jsonl").read_text().splitlines()[:12]
    lines[2] = lines[2][:-5]
    example = json.loads(lines[4])
    example["messages"] = example["messages"][:-1]
    lines[4] = json.dumps(example)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def qa_csv(tmp_path: Path) -> Path:
    path = tmp_path / "qa.csv"
    path.write_text(QA_CSV)
    return path


def test_a_good_file_is_checked_with_token_stats_and_a_histogram(api, orders):
    file_id = upload(api, orders / "train.jsonl")
    body = api.post(f"/files/{file_id}/check", json={}).json()
    report = body["report"]
    assert report["ok"] and report["description"] == "OpenAI chat (JSONL)"
    assert report["n_examples"] == 300
    stats = report["stats"]
    assert stats["n_examples"] == 300 and stats["total_tokens"]["max"] > 0
    histogram = body["histogram"]
    assert sum(histogram["counts"]) == 300
    assert len(histogram["edges"]) == len(histogram["counts"]) + 1
    assert histogram["edges"][0] == stats["total_tokens"]["min"]
    assert histogram["edges"][-1] > stats["total_tokens"]["max"]
    assert body["columns"] is None and body["problem"] is None

    valid_id = upload(api, orders / "validation.jsonl")
    both = api.post(f"/files/{file_id}/check", json={"validation_file": valid_id}).json()
    assert both["report"]["n_validation_examples"] == 40


def test_a_small_file_is_too_few_to_train_on_but_fine_as_held_out_data(api, orders, tmp_path):
    path = tmp_path / "held-out.jsonl"
    path.write_text("".join((orders / "test.jsonl").read_text().splitlines(keepends=True)[:4]))
    file_id = upload(api, path)
    as_training = api.post(f"/files/{file_id}/check", json={}).json()["report"]
    assert not as_training["ok"]
    assert [e["kind"] for e in as_training["errors"]] == ["too_few_examples"]
    as_held_out = api.post(f"/files/{file_id}/check", json={"held_out": True}).json()["report"]
    assert as_held_out["ok"] and as_held_out["n_examples"] == 4


def test_a_parquet_table_maps_to_preference_pairs_rendered_side_by_side(api, tmp_path):
    path = tmp_path / "prefs.parquet"
    rows = {
        "q": [f"Name a colour, {i}." for i in range(10)],
        "good": [f"Blue {i}." for i in range(10)],
        "bad": [f"No {i}." for i in range(10)],
    }
    pq.write_table(pa.table(rows), path)
    file_id = upload(api, path)
    first = api.post(f"/files/{file_id}/check", json={}).json()
    assert first["columns"] == ["q", "good", "bad"] and first["report"] is None
    line = api.get(f"/files/{file_id}/lines", params={"start": 2}).json()["data"]
    assert json.loads(line[0]["text"]) == {
        "q": "Name a colour, 1.",
        "good": "Blue 1.",
        "bad": "No 1.",
    }

    mapping = {"prompt": "q", "chosen": "good", "rejected": "bad"}
    report = api.post(f"/files/{file_id}/check", json={"mapping": mapping}).json()["report"]
    assert report["ok"] and report["n_examples"] == 10
    body = api.post(f"/files/{file_id}/render", json={"mapping": mapping, "index": 1}).json()
    assert body["kind"] == "pairs"
    chosen, rejected = body["sequences"]
    assert (chosen["name"], rejected["name"]) == ("chosen", "rejected")
    assert "".join(t["text"] for t in chosen["tokens"] if t["loss"]) == "Blue 1.<|im_end|>"
    assert "".join(t["text"] for t in rejected["tokens"] if t["loss"]) == "No 1.<|im_end|>"


def test_a_bad_file_is_a_200_whose_errors_name_their_lines_and_the_lines_read_back(api, bad_file):
    file_id = upload(api, bad_file)
    response = api.post(f"/files/{file_id}/check", json={})
    assert response.status_code == 200
    report = response.json()["report"]
    assert not report["ok"]
    by_line = {e["line"]: e["kind"] for e in report["errors"] if e["line"] is not None}
    assert by_line == {3: "invalid_json", 5: "example_missing_assistant_message"}
    assert {e["file"] for e in report["errors"]} == {"bad.jsonl"}

    page = api.get(f"/files/{file_id}/lines", params={"start": 3, "count": 1}).json()
    assert page["total_lines"] == 12
    assert page["data"] == [{"line": 3, "text": bad_file.read_text().split("\n")[2]}]


def test_a_csv_needs_a_mapping_then_reads_converts_and_splits(api, qa_csv):
    file_id = upload(api, qa_csv)
    first = api.post(f"/files/{file_id}/check", json={}).json()
    assert first["report"] is None and first["columns"] == ["question", "answer"]
    assert first["problem"]["message"].startswith("qa.csv has the columns 'question', 'answer'")

    mapping = {"system": "=You add numbers.", "user": "question", "assistant": "answer"}
    mapped = api.post(f"/files/{file_id}/check", json={"mapping": mapping}).json()
    assert mapped["report"]["ok"] and mapped["report"]["n_examples"] == 12
    assert mapped["report"]["description"] == "column mapping (CSV)"

    converted = api.post(f"/files/{file_id}/convert", json={"mapping": mapping}).json()
    assert converted["filename"] == "qa.jsonl" and converted["n_examples"] == 12
    text = api.get(f"/files/{converted['id']}/content").text
    rows = [json.loads(line) for line in text.splitlines()]
    assert rows[1]["messages"] == [
        {"role": "system", "content": "You add numbers."},
        {"role": "user", "content": "What is 1 + 1?"},
        {"role": "assistant", "content": "2"},
    ]

    parts = api.post(
        f"/files/{file_id}/split", json={"mapping": mapping, "validation": 0.25, "seed": 1}
    ).json()
    train, valid = parts["training_file"], parts["validation_file"]
    assert (train["n_examples"], valid["n_examples"]) == (9, 3)
    assert (train["filename"], valid["filename"]) == ("qa.train.jsonl", "qa.validation.jsonl")
    lines = [
        api.get(f"/files/{f['id']}/lines", params={"count": 100}).json() for f in parts.values()
    ]
    assert [page["total_lines"] for page in lines] == [9, 3]
    listed = {f["id"] for f in api.get("/files").json()["data"]}
    assert {converted["id"], train["id"], valid["id"]} <= listed


def test_render_marks_exactly_the_tokens_that_carry_the_loss(api, orders, tokenizer):
    file_id = upload(api, orders / "validation.jsonl")
    body = api.post(f"/files/{file_id}/render", json={"index": 2}).json()
    assert body["index"] == 2 and body["n_examples"] == 40 and body["kind"] == "chat"
    assert body["line"] == 3
    (sequence,) = body["sequences"]
    record = read(orders / "validation.jsonl").records[2]
    encoded = encode(tokenizer, record, 1024)
    assert len(sequence["tokens"]) == len(encoded.input_ids)
    assert [t["loss"] for t in sequence["tokens"]] == [label != IGNORE for label in encoded.labels]
    loss_text = "".join(t["text"] for t in sequence["tokens"] if t["loss"])
    assert loss_text == record.messages[-1].content + "<|im_end|>"
    assert "".join(t["text"] for t in sequence["tokens"]) == tokenizer.decode(encoded.input_ids)
    assert sequence["n_loss_tokens"] == encoded.n_loss_tokens


def test_errors_are_4xx_that_name_the_field(api, qa_csv, orders):
    assert api.post("/files/file-nope/check", json={}).status_code == 404
    assert api.get("/files/file-nope/lines").status_code == 404
    assert api.post("/files/file-nope/render", json={}).status_code == 404
    orders_id = upload(api, orders / "validation.jsonl")
    no_validation = api.post(f"/files/{orders_id}/check", json={"validation_file": "file-nope"})
    assert no_validation.status_code == 404
    assert no_validation.json()["error"]["param"] == "validation_file"

    csv_id = upload(api, qa_csv)
    bad = api.post(
        f"/files/{csv_id}/check", json={"mapping": {"user": "questoin", "assistant": "answer"}}
    )
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert error["param"] == "mapping" and "Did you mean 'question'" in error["message"]
    # The file is named as it was uploaded, never by where the server keeps it.
    assert error["message"].startswith("qa.csv has no column 'questoin'")
    not_a_mapping = api.post(f"/files/{csv_id}/check", json={"mapping": ["user"]})
    assert not_a_mapping.status_code == 400
    assert not_a_mapping.json()["error"]["param"] == "mapping"
    # Without a mapping a CSV of unknown columns cannot be converted: a 400 that says why.
    refused = api.post(f"/files/{csv_id}/convert", json={})
    assert refused.status_code == 400 and "cannot be guessed" in refused.json()["error"]["message"]

    out_of_range = api.post(f"/files/{orders_id}/render", json={"index": 40})
    assert out_of_range.status_code == 400
    assert out_of_range.json()["error"]["param"] == "index"
    assert "0 to 39" in out_of_range.json()["error"]["message"]
    bad_split = api.post(f"/files/{orders_id}/split", json={"validation": 1.5})
    assert bad_split.status_code == 400
    assert bad_split.json()["error"]["param"] == "validation"
    unknown_model = api.post(f"/files/{orders_id}/check", json={"model": "no-such-model"})
    assert 400 <= unknown_model.status_code < 500
    assert unknown_model.json()["error"]["param"] == "model"
