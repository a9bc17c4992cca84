"""The issue's "done means", in one browser session: from a CSV to a fine-tuned model one chats
with, and whether it beat few-shot prompting, only by clicking (no SDK call arranges anything)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from playwright.sync_api import expect

ORDERS = Path(__file__).resolve().parents[2] / "src/tunesmith/tasks/orders"
LONG_MS = 600_000  # training and the comparison, on the one worker of a 2-core machine


def orders_csv(source: str, n: int, target: Path) -> Path:
    """The bundled task as a spreadsheet would hold it: one row per order, no messages."""
    rows = [json.loads(line) for line in (ORDERS / source).read_text().splitlines()[:n]]
    with target.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["customer message", "order as JSON"])
        for row in rows:
            by_role = {m["role"]: m["content"] for m in row["messages"]}
            writer.writerow([by_role["user"], by_role["assistant"]])
    return target


def map_and_save(page, path: Path, system: str, *, held_out: bool = False) -> str:
    """On the Data page: upload a CSV, map its columns, save it as chat JSONL; the new file's id.
    Held-out data may be smaller than training's minimum of 10 examples."""
    page.get_by_label("Choose a training file").set_input_files(str(path))
    # The page of the file uploaded before has the same columns: wait for this file's page first,
    # or the choices below land on the old page just before the router replaces it.
    expect(page.locator(".inspector .filename")).to_have_text(path.name, timeout=60_000)
    expect(page.locator(".mapping")).to_contain_text("customer message", timeout=60_000)
    if held_out:
        page.get_by_label("Used for").select_option("held-out")
    page.get_by_label("User message").select_option("customer message")
    page.get_by_label("Assistant answer").select_option("order as JSON")
    page.get_by_label("System message").select_option(label="a system prompt I type")
    page.get_by_label("System prompt").fill(system)
    page.get_by_role("button", name="Apply mapping").click()
    ready = "ready as held-out data" if held_out else "ready to train"
    expect(page.locator(".summary")).to_contain_text(ready)
    page.get_by_role("button", name="Save as chat JSONL").click()
    saved = page.locator(".saved")
    expect(saved).to_contain_text(f"{path.stem}.jsonl")
    return saved.locator("code").text_content()


def test_from_a_csv_to_a_model_one_chats_with_and_a_verdict_only_by_clicking(
    ui, page, tmp_path
) -> None:
    system = json.loads((ORDERS / "train.jsonl").read_text().splitlines()[0])["messages"][0][
        "content"
    ]
    page.goto(f"{ui.url}/#/data")
    train_id = map_and_save(page, orders_csv("train.jsonl", 12, tmp_path / "my-orders.csv"), system)
    test_id = map_and_save(
        page, orders_csv("test.jsonl", 4, tmp_path / "held-out.csv"), system, held_out=True
    )

    # New job, from the navigation: the saved file, a short run, launched.
    page.get_by_role("navigation").get_by_role("link", name="New job").click()
    # By role: until the router swaps pages, the data page's "Choose a training file" input also
    # answers to that label, and select_option on it fails at once instead of waiting.
    page.get_by_role("combobox", name="Training file", exact=True).select_option(train_id)
    page.get_by_label("Suffix").fill("journey")
    page.get_by_label("epochs", exact=True).fill("1")
    page.get_by_label("batch size", exact=True).fill("4")
    expect(page.locator("section.plan").get_by_label("Command")).to_contain_text(
        "tunesmith train --data my-orders.jsonl", timeout=60_000
    )
    page.get_by_role("button", name="Launch job").click()
    expect(page).to_have_url(re.compile(r"#/jobs/ftjob-"))
    expect(page.locator(".status[data-status=succeeded]")).to_be_visible(timeout=LONG_MS)
    final = page.get_by_role("region", name="Fine-tuned model")
    model = final.locator("code.name").text_content()
    assert ":journey:" in model

    # Chat with it.
    final.get_by_role("link", name="Chat").click()
    expect(page.get_by_label("Model", exact=True)).to_have_value(model)
    page.get_by_label("Message").fill("Hi, this is Ana Silva. Ship 3 desk lamps to Oslo by May 2.")
    page.get_by_role("button", name="Send").click()
    answer = page.get_by_role("region", name=model, exact=True).locator(".bubble.assistant").last
    expect(answer).not_to_be_empty(timeout=LONG_MS)
    expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=LONG_MS)

    # Did it beat few-shot prompting? Compare, from the job's page.
    page.go_back()
    page.get_by_role("region", name="Fine-tuned model").get_by_role("link", name="Compare").click()
    # By role: until the router swaps pages, the job page's "Fine-tuned model" region also
    # answers to that label, and a value check on a region fails at once instead of waiting.
    expect(page.get_by_role("combobox", name="Fine-tuned model")).to_have_value(model)
    page.get_by_label("Training file", exact=True).select_option(train_id)
    page.get_by_label("Test file", exact=True).select_option(test_id)
    page.get_by_text("More settings").click()
    page.get_by_label("Shots").fill("2")
    page.get_by_label("Max tokens").fill("64")
    page.get_by_label("General-ability probes").uncheck()
    page.get_by_role("button", name="Start comparison").click()
    expect(page).to_have_url(re.compile(r"#/compare/cmp_"))
    badge = page.get_by_role("heading", level=1).locator(".badge")
    expect(badge).to_have_text("succeeded", timeout=LONG_MS)
    verdict = page.get_by_role("region", name="Verdict")
    expect(verdict).to_contain_text("Quality")
    table = page.frame_locator("iframe.report").locator("table").first
    expect(table).to_contain_text("few-shot")
    expect(table).to_contain_text(model)
