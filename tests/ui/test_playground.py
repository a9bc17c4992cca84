"""The playground: real models answer, token by token, alone or side by side."""

from __future__ import annotations

import json
import time

from playwright.sync_api import expect

BASE = "smollm2-135m-instruct"
ANSWER_MS = 300_000  # decoding shares two CPU cores with whatever else runs: be patient
ORDER = "Please deliver 3 office chairs to Busan on May 11. Contact: Priya Dubois."
EXTRACT = (  # the orders task's system prompt, as the model was trained with it
    "Extract the order from the customer's message. Answer with JSON only, with the keys "
    "customer, product, quantity (a number), city and date (YYYY-MM-DD, year 2026)."
)


# Every column's last answer, in one look: [state, characters so far].
SNAPSHOT = """() => [...document.querySelectorAll('.column')].map((column) => {
  const bubble = [...column.querySelectorAll('.bubble.assistant')].pop();
  return [bubble.dataset.state, bubble.querySelector('.answer').textContent.length];
})"""


def open_playground(ui, page, model: str) -> None:
    page.goto(f"{ui.url}/#/playground?model={model}")
    expect(page.get_by_label("Model", exact=True)).to_have_value(model)


def settings(page, **values: str) -> None:
    page.get_by_text("System prompt, sampling, JSON mode, tools").click()
    for label, value in values.items():
        page.get_by_label(label, exact=True).fill(value)


def send(page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def column(page, model: str):
    return page.get_by_role("region", name=model, exact=True)


def answer(page, model: str):
    return column(page, model).locator(".bubble.assistant").last


def test_chat_with_a_fine_tuned_model_streams_its_tokens_in(ui, page, trained_model) -> None:
    open_playground(ui, page, trained_model.name)
    settings(page, **{"Max tokens": "24", "Temperature": "0"})
    send(page, ORDER)
    bubble = answer(page, trained_model.name)
    lengths = []
    deadline = time.monotonic() + ANSWER_MS / 1000
    while time.monotonic() < deadline and bubble.get_attribute("data-state") != "done":
        lengths.append(len(bubble.locator(".answer").text_content() or ""))
        page.wait_for_timeout(30)
    growth = sorted(set(lengths) - {0})
    assert len(growth) >= 3, f"the answer came at once, not token by token: {lengths}"
    assert growth == sorted(growth)  # it only grows
    final = bubble.locator(".answer").text_content()
    assert len(final) >= growth[-1] > 0
    expect(column(page, trained_model.name).locator(".tokens-count")).to_contain_text("tokens")

    # The conversation goes on: the second turn sends the first one with it.
    send(page, "Thanks. And the city again?")
    expect(column(page, trained_model.name).locator(".bubble.user")).to_have_count(2)
    expect(answer(page, trained_model.name)).to_have_attribute(
        "data-state", "done", timeout=ANSWER_MS
    )


def test_side_by_side_with_the_base_model_both_answer_at_once(
    ui, page, shot, trained_model
) -> None:
    open_playground(ui, page, trained_model.name)
    page.get_by_label("Side by side with").select_option(BASE)
    settings(page, **{"System prompt": EXTRACT, "Max tokens": "32", "Temperature": "0"})
    send(page, ORDER)
    # Both stream at once: at some moment both columns hold part of an answer.
    both_streaming = False
    deadline = time.monotonic() + ANSWER_MS / 1000
    while time.monotonic() < deadline:
        columns = page.evaluate(SNAPSHOT)
        both_streaming |= all(state == "streaming" and n > 0 for state, n in columns)
        if all(state == "done" for state, _ in columns):
            break
        page.wait_for_timeout(30)
    assert both_streaming, "one model answered only after the other had finished"
    tuned, base = answer(page, trained_model.name), answer(page, BASE)
    for bubble in (tuned, base):
        expect(bubble).to_have_attribute("data-state", "done", timeout=ANSWER_MS)
        assert bubble.locator(".answer").text_content().strip()
    for model in (trained_model.name, BASE):
        expect(column(page, model).get_by_role("heading", name=model)).to_be_visible()
        expect(column(page, model).locator(".tokens-count")).to_contain_text("tokens")
    shot(page, "playground")
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: nothing spills sideways
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1


def test_the_page_stays_responsive_while_models_decode(ui, page) -> None:
    open_playground(ui, page, BASE)
    settings(page, **{"Max tokens": "400", "Temperature": "1"})
    send(page, "Write a long story about a lighthouse keeper.")
    bubble = answer(page, BASE)
    expect(bubble.locator(".answer")).not_to_have_text("", timeout=ANSWER_MS)  # it has started
    started = time.monotonic()
    status = page.evaluate("fetch('/v1/files').then(r => r.status)")
    assert status == 200 and time.monotonic() - started < 10
    assert bubble.get_attribute("data-state") == "streaming"  # it answered while the model ran
    page.get_by_role("button", name="Stop").click()
    expect(bubble).to_have_attribute("data-finish", "stopped")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    # Leaving the page mid-answer is fine, and the next page opens at once.
    send(page, "Another long story, please.")
    expect(answer(page, BASE).locator(".answer")).not_to_have_text("", timeout=ANSWER_MS)
    page.get_by_role("navigation").get_by_role("link", name="Models").click()
    expect(page.get_by_role("heading", name="Models", exact=True)).to_be_visible(timeout=10_000)


def test_system_prompt_and_max_tokens_take_effect(ui, page) -> None:
    open_playground(ui, page, BASE)
    settings(
        page,
        **{
            "System prompt": "Answer with the single word: banana.",
            "Max tokens": "5",
            "Temperature": "0",
        },
    )
    requests = []
    page.on("request", lambda r: "/chat/completions" in r.url and requests.append(r.post_data_json))
    send(page, "What fruit is yellow?")
    expect(answer(page, BASE)).to_have_attribute("data-finish", "length", timeout=ANSWER_MS)
    assert requests[0]["messages"][0] == {
        "role": "system",
        "content": "Answer with the single word: banana.",
    }
    assert requests[0]["max_tokens"] == 5
    counted = column(page, BASE).locator(".tokens-count").text_content()
    assert counted == "5 tokens"


def test_json_mode_answers_parseable_json(ui, page) -> None:
    open_playground(ui, page, BASE)
    settings(page, **{"Max tokens": "60", "Temperature": "0"})
    page.get_by_label("JSON mode").check()
    send(page, "Give me a JSON object with the name and age of a person.")
    bubble = answer(page, BASE)
    expect(bubble).to_have_attribute("data-state", "done", timeout=ANSWER_MS)
    finish = bubble.get_attribute("data-finish")
    text = bubble.locator(".answer").text_content()
    if finish == "stop":  # a cut-off answer (length) may end mid-object
        assert isinstance(json.loads(text), dict)
    else:
        assert text.lstrip().startswith("{")


def test_tool_calls_show_in_the_answer(ui, page) -> None:
    open_playground(ui, page, BASE)
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    settings(page, **{"Max tokens": "60", "Temperature": "0", "Tools (JSON)": json.dumps([tool])})
    requests = []
    page.on("request", lambda r: "/chat/completions" in r.url and requests.append(r.post_data_json))
    send(page, "What is the weather in Paris? Use the tool.")
    bubble = answer(page, BASE)
    expect(bubble).to_have_attribute("data-state", "done", timeout=ANSWER_MS)
    assert requests[0]["tools"] == [tool]
    if bubble.get_attribute("data-finish") == "tool_calls":
        expect(bubble.locator(".tool-call code")).to_have_text("get_weather")


def test_a_refused_request_shows_the_servers_error(ui, page, expected_console) -> None:
    expected_console.append("status of 400")  # the refused call, logged by the browser
    open_playground(ui, page, BASE)
    settings(page, **{"Temperature": "5"})
    send(page, "Hello")
    alert = column(page, BASE).get_by_role("alert")
    expect(alert).to_contain_text("temperature")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()

    # Tools that are not JSON are caught before sending; tools the server refuses show its error.
    page.get_by_label("Temperature", exact=True).fill("0")
    page.get_by_label("Tools (JSON)").fill("[not json")
    send(page, "Hello")
    expect(page.get_by_role("alert").filter(has_text="not valid JSON")).to_be_visible()
    page.get_by_label("Tools (JSON)").fill(
        '[{"type": "function", "function": {"name": "bad name!"}}]'
    )
    send(page, "Hello")
    expect(column(page, BASE).get_by_role("alert").last).to_contain_text("name")
