"""The New job and Jobs pages, in a browser, on the real built-in model: a short job planned and
launched from the form (estimate, command and YAML first), followed live (curve points and events
while it runs) to its final model and results CSV; a second job cancelled from its page; a job
failed on its data showing the error with the data line.

The first job's model (suffix "ui") is left in place: other UI tests chat with it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect

MODEL = "smollm2-135m-instruct"
ORDERS = Path(__file__).resolve().parents[2] / "src" / "tunesmith" / "tasks" / "orders"
N_TRAIN, N_VALID = 10, 3  # OpenAI's minimum; batch size 2, 1 epoch: 5 steps, validated every 2
LOADS_MS = 60_000  # the first page and plan load the tokenizer on a busy 2-core machine
RUN_SECONDS = 600  # the one worker may first finish another test's job
POLL_SECONDS = 0.25


def _slice(name: str, n: int, to: Path) -> Path:
    lines = (ORDERS / name).read_text(encoding="utf-8").splitlines()[:n]
    to.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return to


def _upload(ui, path: Path) -> str:
    with path.open("rb") as f:
        return ui.sdk.files.create(file=f, purpose="fine-tune").id


def _live_state(page) -> dict:
    """Status, curve points and events of the job page, read at one instant."""
    return page.evaluate(
        """() => ({
            status: document.querySelector('.status')?.dataset.status,
            points: Number(document.querySelector('[data-curve=loss]')?.dataset.points || 0),
            validPoints: Number(document.querySelector('[data-curve=loss]')?.dataset.validPoints || 0),
            events: document.querySelectorAll('ol.events li').length,
        })"""
    )


def test_a_short_job_is_planned_launched_and_followed_live_from_the_form(
    ui, page, shot, tmp_path
) -> None:
    train = _upload(ui, _slice("train.jsonl", N_TRAIN, tmp_path / "ui-train.jsonl"))
    valid = _upload(ui, _slice("validation.jsonl", N_VALID, tmp_path / "ui-valid.jsonl"))
    page.goto(f"{ui.url}/#/new?training_file={train}&validation_file={valid}")

    # The form comes from the config: its settings, each labelled, with help naming the flag.
    expect(page.get_by_label("Training file")).to_have_value(train, timeout=LOADS_MS)
    expect(page.get_by_label("Validation file")).to_have_value(valid)
    page.get_by_label("Model").select_option(MODEL)
    expect(page.get_by_label("lora r", exact=True)).to_have_value("16")
    expect(page.get_by_text("Flag: --lora-r.")).to_be_visible()
    expect(page.get_by_role("group", name="Speed")).to_be_visible()
    page.get_by_label("Suffix").fill("ui")
    page.get_by_label("epochs", exact=True).fill("1")
    page.get_by_label("batch size", exact=True).fill("2")
    page.get_by_label("eval steps", exact=True).fill("2")

    # Before launch: the estimate, with "auto" resolved, and the command and YAML.
    plan = page.locator("section.plan")
    expect(plan.locator('[data-estimate="Epochs"]')).to_have_text("1", timeout=LOADS_MS)
    expect(plan.locator('[data-estimate="Steps"]')).to_contain_text("5 (5 per epoch)")
    expect(plan.locator('[data-estimate="Learning rate"]')).to_have_text("0.0004 (auto)")
    expect(plan.locator('[data-estimate="Examples"]')).to_have_text(
        f"{N_TRAIN} + {N_VALID} validation"
    )
    expect(plan.locator('[data-estimate="Time on this machine"]')).to_contain_text("tokens/s")
    command = plan.get_by_label("Command")
    expect(command).to_have_text(
        "tunesmith train --data ui-train.jsonl --validation ui-valid.jsonl --suffix ui "
        "--epochs 1 --batch-size 2 --eval-steps 2"
    )
    expect(plan.get_by_label("YAML config")).to_contain_text("batch_size: 2")
    page.get_by_role("button", name="Copy command").click()
    assert page.evaluate("navigator.clipboard.readText()").startswith("tunesmith train --data")
    with page.expect_download() as yaml_file:
        page.get_by_role("button", name="Download YAML").click()
    assert yaml_file.value.suggested_filename == "train.yaml"
    shot(page, "new-job")

    page.get_by_role("button", name="Launch job").click()
    expect(page).to_have_url(re.compile(r"#/jobs/ftjob-"))
    job_id = page.url.rsplit("/", 1)[-1]
    assert ui.sdk.fine_tuning.jobs.retrieve(job_id).user_provided_suffix == "ui"

    # While it runs, the curve gets points and the events list grows.
    seen_running: list[dict] = []
    deadline = time.monotonic() + RUN_SECONDS
    state = _live_state(page)
    while state["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"the job did not end in {RUN_SECONDS} s: {state}"
        if state["status"] == "running":
            seen_running.append(state)
        time.sleep(POLL_SECONDS)
        state = _live_state(page)
    assert state["status"] == "succeeded", ui.sdk.fine_tuning.jobs.retrieve(job_id).error
    assert any(s["points"] > 0 for s in seen_running), seen_running
    counts = [s["events"] for s in seen_running]
    assert counts and max(counts) > min(counts), "no events arrived while the job ran"
    expect(page.locator("[data-curve=loss]")).to_have_attribute("data-points", "5")
    assert int(page.locator("[data-curve=loss]").get_attribute("data-valid-points")) == 3
    expect(page.locator("[data-curve=score] figcaption")).to_contain_text(
        "Token accuracy: 5 training"
    )

    # The final model and each checkpoint get chat, compare and export.
    job = ui.sdk.fine_tuning.jobs.retrieve(job_id)
    assert ":ui:" in job.fine_tuned_model
    final = page.get_by_role("region", name="Fine-tuned model")
    expect(final).to_contain_text(job.fine_tuned_model)
    chat = final.get_by_role("link", name="Chat")
    expect(chat).to_have_attribute("href", re.compile(r"^#/playground\?model=ft%3A"))
    expect(final.get_by_role("link", name="Compare")).to_have_attribute(
        "href", re.compile(r"^#/compare\?fine_tuned_model=ft%3A")
    )
    checkpoints = page.get_by_role("region", name="Checkpoints")
    expect(checkpoints.get_by_role("row")).not_to_have_count(1)  # more than the header
    first = checkpoints.get_by_role("row").nth(1)
    expect(first.get_by_role("link", name="Chat")).to_be_visible()
    expect(first.get_by_role("button", name="Export")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    final.get_by_label("Export format").select_option("adapter")
    final.get_by_role("button", name="Export").click()
    expect(final.get_by_role("link", name="follow it on Models")).to_be_visible()
    export_id = re.search(r"Export (\S+) queued", final.inner_text()).group(1)
    # not kept: the one worker is shared with the other UI tests
    httpx.post(f"{ui.url}/v1/exports/{export_id}/cancel").raise_for_status()

    with page.expect_download() as results:
        page.get_by_role("button", name="Download results CSV").click()
    assert results.value.suggested_filename == "results.csv"
    csv = Path(results.value.path()).read_text()
    assert csv.startswith("step,train_loss") and len(csv.splitlines()) == 6
    shot(page, "job")
    page.set_viewport_size({"width": 390, "height": 800})
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the job page is {overflow}px wider than a phone"
    page.set_viewport_size({"width": 1280, "height": 800})

    # The list shows it, linked, with its model.
    page.get_by_role("link", name="← All jobs").click()
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row.locator(".badge")).to_have_text("succeeded")
    expect(row).to_contain_text(job.fine_tuned_model)
    expect(row.get_by_role("link", name=job_id)).to_have_attribute("href", f"#/jobs/{job_id}")


def test_a_second_job_is_cancelled_from_its_page(ui, page, tmp_path) -> None:
    train = _upload(ui, _slice("train.jsonl", N_TRAIN, tmp_path / "cancel-train.jsonl"))
    job = ui.sdk.fine_tuning.jobs.create(model=MODEL, training_file=train, suffix="cancelme")
    page.goto(f"{ui.url}/#/jobs")
    page.locator(f'tr[data-job="{job.id}"]').get_by_role("link").click(timeout=LOADS_MS)
    cancel = page.get_by_role("button", name="Cancel")
    expect(cancel).to_be_enabled()
    cancel.click()
    expect(page.locator(".status .badge")).to_have_text("cancelled")
    expect(cancel).to_be_disabled()
    expect(page.get_by_role("button", name="Resume")).to_be_disabled()
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    assert ui.sdk.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_a_job_failed_on_its_data_shows_the_error_and_the_line(ui, page, shot) -> None:
    lines = (ORDERS / "train.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    broken = json.loads(lines[4])
    broken["messages"][1]["role"] = "customer"
    lines[4] = json.dumps(broken)
    data = ("\n".join(lines) + "\n").encode()
    train = ui.sdk.files.create(file=("broken.jsonl", data), purpose="fine-tune").id
    job = ui.sdk.fine_tuning.jobs.create(model=MODEL, training_file=train)
    page.goto(f"{ui.url}/#/jobs/{job.id}")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The job failed", timeout=LOADS_MS)
    expect(alert).to_contain_text("line 5")
    expect(alert).to_contain_text("training_file")
    expect(alert.locator("pre.data-line")).to_contain_text('"role": "customer"')
    expect(page.locator(".status .badge")).to_have_text("failed")

    # The list: this job failed, the earlier ones succeeded or were cancelled (last test: the
    # screenshot shows all three kinds).
    page.get_by_role("link", name="← All jobs").click()
    expect(page.locator(f'tr[data-job="{job.id}"] .badge')).to_have_text("failed")
    shot(page, "jobs")


def test_a_refused_setting_is_shown_in_place_naming_its_field(
    ui, page, tmp_path, expected_console
) -> None:
    expected_console.append("status of 400")  # the refused plan, logged by the browser
    train = _upload(ui, _slice("train.jsonl", N_TRAIN, tmp_path / "refused-train.jsonl"))
    page.goto(f"{ui.url}/#/new?training_file={train}")
    expect(page.get_by_role("button", name="Launch job")).to_be_enabled(timeout=LOADS_MS)
    lora_r = page.get_by_label("lora r", exact=True)
    lora_r.fill("0")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("These settings were refused")
    expect(alert).to_contain_text("config.lora.r")
    expect(lora_r).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("button", name="Launch job")).to_be_disabled()
    lora_r.fill("8")
    expect(alert).to_have_count(0)
    expect(page.get_by_label("Command")).to_contain_text("--lora-r 8")
