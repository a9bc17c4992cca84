"""The models page: every model with its origin and size; export, download, delete."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

BASE = "smollm2-135m-instruct"


def model_row(page, name: str):
    return page.locator(f'tr[data-model="{name}"]')


def test_the_list_shows_built_in_and_trained_models_with_origin_and_size(
    ui, page, trained_model
) -> None:
    page.goto(f"{ui.url}/#/models")
    base = model_row(page, BASE)
    expect(base.locator(".kind")).to_have_text("builtin")
    expect(base.locator(".origin")).to_have_text("built-in")
    expect(base.locator(".size")).to_contain_text("MB")
    expect(base.locator(".parameters")).to_contain_text("M")
    # A built-in cannot be deleted, and the page says why.
    delete = base.get_by_role("button", name="Delete")
    expect(delete).to_be_disabled()
    expect(delete).to_have_accessible_description(
        "Built-in: ships with tunesmith, cannot be deleted."
    )

    tuned = model_row(page, trained_model.name)
    expect(tuned.locator(".kind")).to_have_text("fine-tuned")
    expect(tuned.locator(".origin")).to_contain_text(f"{BASE} by {trained_model.job.id}")
    expect(tuned.locator(".parameters")).to_contain_text("LoRA")
    expect(tuned.locator(".size")).to_contain_text("B")
    expect(tuned.get_by_role("link", name="Chat")).to_have_attribute(
        "href", f"#/playground?model={trained_model.name.replace(':', '%3A')}"
    )
    expect(tuned.get_by_role("link", name="Compare")).to_have_attribute(
        "href", f"#/compare?fine_tuned_model={trained_model.name.replace(':', '%3A')}"
    )
    tuned.get_by_role("link", name=trained_model.job.id).click()
    expect(page).to_have_url(f"{ui.url}/#/jobs/{trained_model.job.id}")
    page.go_back()
    expect(model_row(page, BASE)).to_be_visible()
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: nothing spills sideways
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1


def test_export_a_model_and_download_its_files(ui, page, shot, trained_model) -> None:
    page.goto(f"{ui.url}/#/models")
    model_row(page, trained_model.name).get_by_role("button", name="Export").click()
    expect(page.get_by_label("Model to export")).to_have_value(trained_model.name)
    page.get_by_label("Format").select_option("adapter")
    page.get_by_label("Check it").uncheck()  # the fastest export: files only
    page.get_by_role("button", name="Start export").click()

    expect(page.locator(".toast")).to_contain_text("queued")
    exports = httpx.get(f"{ui.url}/v1/exports").json()["data"]  # newest first
    export = next(e for e in exports if e["config"]["model"] == trained_model.name)
    row = page.locator(f'tr[data-export="{export["id"]}"]')
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text("succeeded", timeout=180_000)  # polled, no reload
    files = httpx.get(f"{ui.url}/v1/exports/{export['id']}").json()["result"]["files"]
    assert files
    name = files[0]
    with page.expect_download() as caught:
        row.get_by_role("button", name=f"Download {name}").click()
    download = caught.value
    assert download.suggested_filename == name
    assert download.path().stat().st_size > 0
    expect(page.locator(".toast")).to_have_count(0, timeout=10_000)  # not over the table
    shot(page, "models")


def test_deleting_a_fine_tuned_model_removes_it_and_a_refusal_shows(
    ui, page, throwaway_model
) -> None:
    doomed = throwaway_model  # its own job: the shared trained model stays
    page.goto(f"{ui.url}/#/models")
    stale = page.context.new_page()  # a second tab, still listing it after it is gone
    stale.goto(f"{ui.url}/#/models")
    row = model_row(page, doomed)
    expect(row.locator(".origin")).to_contain_text(BASE)

    page.once("dialog", lambda dialog: dialog.dismiss())  # "no" deletes nothing
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("heading", name="All models")).to_be_visible()
    assert doomed in [m.id for m in ui.sdk.models.list().data]

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    assert doomed not in [m.id for m in ui.sdk.models.list().data]
    expect(model_row(page, BASE)).to_be_visible()

    # The other tab's delete is refused (it is gone), and says so in place.
    stale.once("dialog", lambda dialog: dialog.accept())
    model_row(stale, doomed).get_by_role("button", name="Delete").click()
    expect(stale.get_by_role("alert")).to_contain_text("does not exist")
