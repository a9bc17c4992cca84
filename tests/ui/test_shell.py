"""The UI's shell: served at / from the package, every page reachable, and the key asked for."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

PAGES = ["Data", "New job", "Jobs", "Compare", "Playground", "Models"]


def test_the_page_and_its_files_come_from_the_server_with_no_outside_address(ui) -> None:
    index = httpx.get(f"{ui.url}/")
    assert index.status_code == 200
    assert "default-src 'self'" in index.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in index.headers["content-security-policy"]
    # Offline: nothing the page loads is fetched from anywhere but this server.
    assert "http://" not in index.text and "https://" not in index.text
    script = httpx.get(f"{ui.url}/ui/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(f"{ui.url}/ui/vendor/uplot/LICENSE").status_code == 200
    assert httpx.get(f"{ui.url}/ui/../settings.py").status_code == 404


def test_every_page_opens_from_the_navigation_by_keyboard(ui, page) -> None:
    page.goto(ui.url)
    for name in PAGES:
        link = page.get_by_role("navigation").get_by_role("link", name=name, exact=True)
        link.focus()
        page.keyboard.press("Enter")
        expect(link).to_have_attribute("aria-current", "page")
        expect(page.locator("main .page")).to_be_visible()


@pytest.mark.parametrize("width", [1280, 390])
def test_pages_fit_the_screen_at_desktop_and_phone_width(ui, page, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    for fragment in ["data", "new", "jobs", "compare", "playground", "models"]:
        page.goto(f"{ui.url}/#/{fragment}")
        expect(page.locator("main .page")).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"#/{fragment} is {overflow}px wider than a {width}px screen"


def test_with_a_key_set_the_ui_refuses_to_work_without_it_and_works_with_it(
    keyed_ui, page, expected_console
) -> None:
    expected_console.append("status of 401")  # the refused calls, logged by the browser
    page.goto(keyed_ui.url)
    key_box = page.get_by_label("Key")
    expect(key_box).to_be_visible()
    expect(page.locator("main .page")).to_have_count(0)  # no page until a key is accepted

    key_box.fill("sk-wrong")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("alert")).to_contain_text("Incorrect API key")
    expect(page.locator("main .page")).to_have_count(0)

    key_box.fill(keyed_ui.key)
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("main .page")).to_be_visible()
    # Kept in the tab, not in a cookie another site's request would carry.
    assert page.context.cookies() == []
    assert page.evaluate("sessionStorage.getItem('tunesmith.api-key')") == keyed_ui.key


def test_a_state_changing_call_from_another_site_is_refused(ui) -> None:
    response = httpx.post(
        f"{ui.url}/v1/fine_tuning/jobs/ftjob-x/cancel", headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
