"""The Data page in a real browser: upload, the check (format, errors that open their line, token
statistics with a histogram), a CSV column mapping, split, and the tokens the model is trained on
compared with what data/render.py computes with the real tokenizer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from playwright.sync_api import expect

from tunesmith.data.readers import read
from tunesmith.data.render import IGNORE, encode


def open_data(page, ui) -> None:
    page.goto(f"{ui.url}/#/data")
    # The shell asks /v1/models first, which reads the model files' headers once per server.
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible(timeout=60_000)


def pick(page, path: Path) -> None:
    """Upload through the labelled file picker, as a keyboard user would."""
    page.get_by_label("Choose a training file").set_input_files(str(path))
    expect(page.locator(".filename")).to_have_text(path.name)
    expect(page.locator(".summary, .mapping").first).to_be_visible(timeout=30_000)  # checked


def test_a_good_file_shows_its_format_token_stats_and_a_histogram(ui, page, shot, orders, tmp_path):
    train = tmp_path / "orders-train.jsonl"
    train.write_bytes((orders / "train.jsonl").read_bytes())
    open_data(page, ui)
    pick(page, train)
    expect(page.locator(".format")).to_have_text("OpenAI chat (JSONL)")
    expect(page.locator(".n-examples")).to_have_text("300")
    expect(page.locator(".summary")).to_contain_text("ready to train")
    stats = page.locator(".stats")
    expect(stats.get_by_role("heading", name="Token statistics")).to_be_visible()
    expect(stats.locator("table.distribution")).to_contain_text("Tokens with loss")
    expect(page.locator(".histogram figcaption")).to_contain_text("300 examples")
    bars = page.locator(".histogram .bars .bar")
    assert bars.count() >= 2
    # The text alternative: every example is in one bin of the table.
    page.get_by_text("The histogram as a table").click()
    counts = [int(c) for c in page.locator("table.bins tbody td:nth-child(2)").all_text_contents()]
    assert sum(counts) == 300 and len(counts) == bars.count()
    page.get_by_text("The histogram as a table").click()  # closed again for the screenshot
    file_id = page.evaluate("location.hash").split("/")[-1]
    link = page.get_by_role("link", name="Train on this file")
    expect(link).to_have_attribute("href", f"#/new?training_file={file_id}")
    shot(page, "data")

    # The file is listed, and opens again from the list.
    page.goto(f"{ui.url}/#/data")
    page.get_by_role("link", name="orders-train.jsonl").first.click()
    expect(page.locator(".format")).to_have_text("OpenAI chat (JSONL)")
    page.set_viewport_size({"width": 390, "height": 800})
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the checked file is {overflow}px wider than a phone"


def test_a_dropped_file_is_uploaded_and_checked(ui, page, orders):
    text = "\n".join((orders / "validation.jsonl").read_text().splitlines()[:12]) + "\n"
    open_data(page, ui)
    page.evaluate(
        """(text) => {
            const data = new DataTransfer();
            data.items.add(new File([text], "dropped.jsonl", { type: "application/jsonl" }));
            const zone = document.querySelector(".dropzone");
            zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true }));
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true }));
        }""",
        text,
    )
    expect(page.locator(".filename")).to_have_text("dropped.jsonl")
    expect(page.locator(".n-examples")).to_have_text("12")


def test_each_error_names_its_line_and_opens_it(ui, page, orders, tmp_path):
    lines = (orders / "train.jsonl").read_text().splitlines()[:12]
    lines[2] = lines[2][:-5]  # broken JSON
    example = json.loads(lines[4])
    example["messages"] = example["messages"][:-1]  # no assistant answer
    lines[4] = json.dumps(example)
    bad = tmp_path / "broken.jsonl"
    bad.write_text("\n".join(lines) + "\n")

    open_data(page, ui)
    pick(page, bad)
    expect(page.locator(".summary")).to_contain_text("2 errors")
    errors = page.locator(".issues.errors li")
    expect(errors).to_have_count(2)
    expect(errors.nth(0)).to_contain_text("Not valid JSON")
    expect(errors.nth(1)).to_contain_text("assistant")

    page.get_by_role("button", name="Line 3").click()
    view = page.locator(".line-view")
    expect(view.locator("figcaption")).to_contain_text("Line 3 of broken.jsonl")
    expect(view.locator(".line.current .text")).to_have_text(lines[2])
    page.get_by_role("button", name="Line 5").click()
    expect(view.locator(".line.current .text")).to_have_text(lines[4])
    expect(view.locator(".line.current")).to_have_attribute("data-line", "5")


def test_a_csv_is_mapped_checked_and_saved_as_chat_jsonl(ui, page, tmp_path):
    csv = tmp_path / "sums.csv"
    csv.write_text(
        "id,question,answer\n" + "".join(f"{i},What is {i}+{i}?,{2 * i}\n" for i in range(12))
    )
    open_data(page, ui)
    pick(page, csv)
    expect(page.locator(".mapping")).to_contain_text("The file's columns: id, question, answer")
    user = page.get_by_label("User message")
    assert user.locator("option").all_text_contents() == ["id", "question", "answer"]
    user.select_option("question")
    page.get_by_label("Assistant answer").select_option("answer")
    page.get_by_label("System message").select_option(label="a system prompt I type")
    page.get_by_label("System prompt").fill("You add numbers.")
    page.get_by_role("button", name="Apply mapping").click()

    expect(page.locator(".format")).to_have_text("column mapping (CSV)")
    expect(page.locator(".n-examples")).to_have_text("12")
    expect(page.locator(".summary")).to_contain_text("ready to train")
    # The mapping stays applied: the form shows it.
    expect(page.get_by_label("User message")).to_have_value("question")

    page.get_by_role("button", name="Save as chat JSONL").click()
    saved = page.locator(".saved")
    expect(saved).to_contain_text("sums.jsonl")
    expect(saved).to_contain_text("12 examples")
    new_id = saved.locator("code").text_content()
    rows = [json.loads(line) for line in ui.sdk.files.content(new_id).text.splitlines()]
    assert len(rows) == 12
    assert rows[3]["messages"] == [
        {"role": "system", "content": "You add numbers."},
        {"role": "user", "content": "What is 3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    expect(page.get_by_role("link", name="Train on this file")).to_have_attribute(
        "href", f"#/new?training_file={new_id}"
    )


def test_the_tokens_marked_are_exactly_the_ones_training_puts_the_loss_on(
    ui, page, shot, orders, tokenizer, tmp_path
):
    source = tmp_path / "orders-validation.jsonl"
    source.write_bytes((orders / "validation.jsonl").read_bytes())
    open_data(page, ui)
    pick(page, source)
    page.get_by_label("Example (from 0)").fill("2")
    page.get_by_role("button", name="Show what the model is trained on").click()
    tokens = page.locator(".trained-on .tokens")
    expect(tokens).to_be_visible()
    expect(page.locator(".trained-on")).to_contain_text("Example 2 of 40, line 3 of the file")

    record = read(source).records[2]
    encoded = encode(tokenizer, record, 1024)
    expect(tokens.locator(".tok")).to_have_count(len(encoded.input_ids))
    loss_ids = [
        i for i, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE
    ]
    marked = "".join(tokens.locator(".tok.loss").all_text_contents())
    assert marked == tokenizer.decode(loss_ids)
    assert marked == record.messages[-1].content + "<|im_end|>"
    user_turn = record.messages[1].content
    unmarked = "".join(tokens.locator(".tok:not(.loss)").all_text_contents())
    assert user_turn in unmarked and user_turn not in marked
    expect(page.locator(".trained-on .legend")).to_contain_text("carry the loss")
    tokens.scroll_into_view_if_needed()
    shot(page, "data-tokens")


def test_split_makes_two_files_with_the_right_counts(ui, page, orders, tmp_path):
    source = tmp_path / "to-split.jsonl"
    source.write_bytes((orders / "validation.jsonl").read_bytes())
    open_data(page, ui)
    pick(page, source)
    page.get_by_label("Validation share").fill("0.25")
    page.get_by_label("Seed").fill("3")
    page.get_by_role("button", name="Split into training and validation").click()
    train, valid = page.locator(".made-train"), page.locator(".made-validation")
    expect(train).to_contain_text("30 examples")
    expect(valid).to_contain_text("10 examples")
    train_id = train.locator("code").text_content()
    valid_id = valid.locator("code").text_content()
    assert len(ui.sdk.files.content(train_id).text.splitlines()) == 30
    assert ui.sdk.files.retrieve(valid_id).filename == "to-split.validation.jsonl"
    expect(page.get_by_role("link", name="Train on these files")).to_have_attribute(
        "href", re.compile(f"training_file={train_id}&validation_file={valid_id}$")
    )


def test_a_parquet_table_maps_to_preference_pairs_and_shows_both_answers(ui, page, tmp_path):
    path = tmp_path / "colours.parquet"
    pq.write_table(
        pa.table(
            {
                "question": [f"Name colour number {i}." for i in range(10)],
                "good": [f"Blue, number {i}." for i in range(10)],
                "bad": [f"No {i}." for i in range(10)],
            }
        ),
        path,
    )
    open_data(page, ui)
    pick(page, path)
    page.get_by_label("Examples are").select_option("pairs")
    expect(page.get_by_label("User message")).to_be_hidden()
    page.get_by_label("Prompt", exact=True).select_option("question")
    page.get_by_label("Chosen answer").select_option("good")
    page.get_by_label("Rejected answer").select_option("bad")
    page.get_by_role("button", name="Apply mapping").click()
    expect(page.locator(".format")).to_have_text("column mapping (Parquet)")
    expect(page.locator(".summary")).to_contain_text("ready to train")

    page.get_by_label("Example (from 0)").fill("4")
    page.get_by_role("button", name="Show what the model is trained on").click()
    chosen = page.locator('.tokens[data-sequence="chosen"]')
    rejected = page.locator('.tokens[data-sequence="rejected"]')
    expect(chosen).to_contain_text("Name colour number 4.")
    assert "".join(chosen.locator(".tok.loss").all_text_contents()) == "Blue, number 4.<|im_end|>"
    assert "".join(rejected.locator(".tok.loss").all_text_contents()) == "No 4.<|im_end|>"
    page.set_viewport_size({"width": 390, "height": 800})
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than a phone"
