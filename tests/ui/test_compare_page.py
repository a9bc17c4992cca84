"""The compare page: from CSV-like files to a verdict, by clicking; the report in the page."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import expect

ORDERS = Path(__file__).resolve().parents[2] / "src/tunesmith/tasks/orders"


def test_start_from_uploaded_files_and_open_the_finished_report(
    ui, page, shot, trained_model
) -> None:
    # The Jobs and Models pages link here with the fine-tuned model filled in.
    page.goto(f"{ui.url}/#/compare?fine_tuned_model={trained_model.name}")
    expect(page.get_by_label("Fine-tuned model")).to_have_value(trained_model.name)
    expect(page.get_by_label("Base model")).to_have_value("smollm2-135m-instruct")

    page.get_by_label("Upload training file").set_input_files(ORDERS / "train.jsonl")
    expect(page.get_by_text("Uploaded train.jsonl")).to_be_visible()
    page.get_by_label("Upload test file").set_input_files(ORDERS / "test.jsonl")
    expect(page.get_by_text("Uploaded test.jsonl")).to_be_visible()
    training_id = page.get_by_label("Training file", exact=True).input_value()
    test_id = page.get_by_label("Test file", exact=True).input_value()
    assert training_id != test_id and training_id.startswith("file-")

    page.get_by_text("More settings").click()
    page.get_by_label("Shots").fill("1")
    page.get_by_label("Limit").fill("4")
    page.get_by_label("Max tokens").fill("48")
    page.get_by_label("General-ability probes").uncheck()
    page.get_by_role("button", name="Start comparison").click()

    expect(page).to_have_url(re.compile(r"#/compare/cmp_"))
    comparison_id = page.url.rsplit("/", 1)[1]
    created = httpx.get(f"{ui.url}/v1/comparisons/{comparison_id}").json()
    assert created["config"]["fine_tuned"] == trained_model.name
    assert created["config"]["limit"] == 4 and created["config"]["probes"] is False
    assert created["config"]["train"].endswith(".jsonl")

    # Its progress shows as it runs, then the verdict and the report, with no reload.
    expect(page.locator(".events li").first).to_be_visible()
    badge = page.get_by_role("heading", level=1).locator(".badge")
    expect(badge).to_have_text("succeeded", timeout=600_000)
    done = httpx.get(f"{ui.url}/v1/comparisons/{comparison_id}").json()
    headline = done["recommendation"]["headline"]
    expect(page.get_by_role("region", name="Verdict")).to_contain_text(headline)

    frame = page.frame_locator("iframe.report")
    expect(frame.locator("p.verdict")).to_have_text(headline)
    expect(frame.locator("table").first).to_contain_text("fine-tuned")
    expect(frame.locator("svg").first).to_be_visible()  # the plots are inline SVG
    assert page.locator("iframe.report").get_attribute("sandbox") == ""  # nothing in it runs
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    shot(page, "compare")
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: nothing spills sideways
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1

    # It is listed with the past comparisons, its verdict beside it.
    page.get_by_role("link", name="← All comparisons").click()
    row = page.locator(f'tr[data-comparison="{comparison_id}"]')
    expect(row).to_contain_text(headline)
    expect(row.locator(".badge")).to_have_text("succeeded")
    # Uploaded here, the files are there to pick for the next one.
    picker = page.get_by_label("Training file", exact=True)
    expect(picker.locator(f'option[value="{training_id}"]')).to_have_count(1)
    expect(page.get_by_label("Test file", exact=True)).to_contain_text("test.jsonl")


def test_cancel_a_comparison_from_its_page(ui, page, trained_model) -> None:
    upload = lambda name: ui.sdk.files.create(file=ORDERS / name, purpose="fine-tune").id  # noqa: E731
    made = httpx.post(
        f"{ui.url}/v1/comparisons",
        json={
            "training_file": upload("train.jsonl"),
            "test_file": upload("test.jsonl"),
            "fine_tuned_model": trained_model.name,
            "probes": False,
        },
    ).json()
    page.goto(f"{ui.url}/#/compare/{made['id']}")
    page.get_by_role("button", name="Cancel").click()
    badge = page.get_by_role("heading", level=1).locator(".badge")
    expect(badge).to_have_text("cancelled", timeout=120_000)
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.locator(".events")).to_contain_text("cancel requested")


def test_a_refused_start_shows_the_servers_error(ui, page, expected_console) -> None:
    expected_console.append("status of 400")
    page.goto(f"{ui.url}/#/compare")
    page.get_by_label("Upload training file").set_input_files(ORDERS / "train.jsonl")
    expect(page.get_by_text("Uploaded train.jsonl")).to_be_visible()
    page.get_by_label("Fine-tuned model").select_option("")
    page.get_by_label("Train one now").uncheck()
    page.get_by_role("button", name="Start comparison").click()
    expect(page.get_by_role("alert")).to_contain_text("fine_tuned_model")
    expect(page).to_have_url(re.compile(r"#/compare$"))


def test_rank_several_models_and_ask_for_a_learning_curve(ui, page, trained_model) -> None:
    """The form sends several models as fine_tuned_models, and the curve as learning_curve."""
    page.goto(f"{ui.url}/#/compare?fine_tuned_model={trained_model.name}")
    page.get_by_label("Upload training file").set_input_files(ORDERS / "train.jsonl")
    expect(page.get_by_text("Uploaded train.jsonl")).to_be_visible()
    also = page.get_by_label("Also rank")
    others = [v for v in also.locator("option").evaluate_all("os => os.map(o => o.value)")]
    second = next(v for v in others if v != trained_model.name)  # a checkpoint of its job
    also.select_option([second])
    page.get_by_label("Learning curve").check()
    page.get_by_text("More settings").click()
    expect(page.get_by_label("Metric").locator("option[value=tool-calls]")).to_have_count(1)
    page.get_by_role("button", name="Start comparison").click()
    expect(page).to_have_url(re.compile(r"#/compare/cmp_"))
    comparison_id = page.url.rsplit("/", 1)[1]
    http = httpx.Client(base_url=ui.url, timeout=60)
    config = http.get(f"/v1/comparisons/{comparison_id}").json()["config"]
    assert config["fine_tuned"] == [trained_model.name, second]
    assert config["learning_curve"] is True
    expect(page.get_by_role("heading", level=1).locator("..")).to_contain_text(second)
    http.post(f"/v1/comparisons/{comparison_id}/cancel")  # the run itself is tested elsewhere
    expect(page.get_by_role("heading", level=1).locator(".badge")).to_have_text(
        "cancelled", timeout=120_000
    )
