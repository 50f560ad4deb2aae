"""The built-in web page in a real headless Chromium (Debian's `chromium`, driven by
Playwright), against a real server: chat streaming, Stop, model switching, a worker job, the
status view, safe rendering of hostile model output, and the API key.

Set OVRUNNER_SCREENSHOTS=DIR to keep the screenshots the tests take (`make screenshots`
writes the ones in docs/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import MODEL
from tests.support.cli import store_with_tiny
from tests.support.server import ServerProcess
from tests.support.system import require_program

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

# As the machine's own check starts it: without the background-networking flags, Chromium
# keeps dialling Google's hosts, which this machine's closed network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
KEY = "page-test-key"
LONG_PROMPT = "Write a very long story about a dragon who learns to cook, in many chapters."


def chromium_path() -> str:
    return shutil.which("chromium-browser") or require_program("chromium", "chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> Iterator[ServerProcess]:
    """The embedded SmolLM2, loaded, and the tiny test model beside it to switch to."""
    store = store_with_tiny(tmp_path_factory.mktemp("page-store"), tiny_gguf)
    process = ServerProcess(store, "--preload").wait_ready()
    yield process
    process.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], errors


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("OVRUNNER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def open_page(page: Any, server: ServerProcess) -> None:
    page.goto(server.base_url + "/")
    expect(page.get_by_test_id("model-select").locator(f"option[value='{MODEL}']")).to_be_attached()


def send(page: Any, prompt: str, max_tokens: int = 48) -> None:
    page.get_by_test_id("max-tokens").fill(str(max_tokens))
    page.get_by_test_id("temperature").fill("0")
    page.get_by_test_id("prompt").fill(prompt)
    page.get_by_test_id("prompt").press("Enter")


def test_the_page_is_served_with_a_strict_policy(page_server: ServerProcess) -> None:
    response = httpx.get(page_server.base_url + "/")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(page_server.base_url + "/ui/main.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(page_server.base_url + "/ui/../security.py").status_code == 404


def test_an_answer_streams_in_and_ends_with_its_stats(
    page: Any, page_server: ServerProcess
) -> None:
    open_page(page, page_server)
    page.get_by_test_id("system-prompt").fill("You are brief.")
    send(page, "Name three colours of the rainbow.", max_tokens=64)
    answer, stats = page.get_by_test_id("answer"), page.get_by_test_id("answer-stats")
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while not stats.inner_text() and time.monotonic() < deadline:
        text = answer.inner_text()
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        page.wait_for_timeout(20)
    expect(stats).to_have_text(re.compile(r"^\d+ tokens · time to first token [\d.]+ s"))
    assert len(seen) >= 2, seen  # it grew while it streamed
    assert answer.inner_text().startswith(seen[0][:5])
    screenshot(page, "chat")


def test_stop_closes_the_stream_and_the_server_cancels(
    page: Any, page_server: ServerProcess
) -> None:
    open_page(page, page_server)
    send(page, LONG_PROMPT, max_tokens=2000)
    answer = page.get_by_test_id("answer")
    expect(answer).to_have_text(re.compile(r"\S{3}.*\S{3}", re.S), timeout=30_000)
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("answer-stats")).to_have_text(re.compile(r"^Stopped after"))
    deadline = time.monotonic() + 10
    while True:
        runners = httpx.get(page_server.base_url + "/engines/ps").json()["runners"]
        [runner] = [r for r in runners if r["model"] == MODEL and r["decoding"] == "plain"]
        if runner["stats"]["running"] == 0 and runner["in_use"] == 0:
            break
        assert time.monotonic() < deadline, runner
        time.sleep(0.05)
    # Escape stops too, and the conversation goes on after a stopped answer.
    send(page, LONG_PROMPT, max_tokens=2000)
    expect(page.get_by_test_id("answer")).not_to_be_empty(timeout=30_000)
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("answer-stats")).to_have_text(re.compile(r"^Stopped after"))
    expect(page.get_by_test_id("send")).to_be_enabled()


def test_switching_the_model_answers_from_the_other_model(
    page: Any, page_server: ServerProcess
) -> None:
    open_page(page, page_server)
    picker = page.get_by_test_id("model-select")
    options = picker.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert {MODEL, "tiny"} <= set(options)
    assert "all-minilm-l6-v2" not in options  # an embedding model cannot chat
    picker.select_option("tiny")
    send(page, "Say something, tiny model.", max_tokens=8)
    expect(page.get_by_test_id("answer-stats")).to_contain_text("tokens", timeout=60_000)
    metrics = httpx.get(page_server.base_url + "/metrics").text
    assert re.search(r'ovrunner_generated_tokens_total\{model="tiny"\} [1-9]', metrics)
    assert page.locator(".message.assistant .who").last.inner_text() == "tiny"


def test_a_worker_job_shows_its_json_and_busy_delta(page: Any, page_server: ServerProcess) -> None:
    open_page(page, page_server)
    page.get_by_test_id("tab-jobs").click()
    page.get_by_test_id("job-select").select_option("memory_candidate")
    page.get_by_test_id("job-input").fill(
        "Alice said the quarterly budget review moved to Thursday at 3pm in room 4."
    )
    page.get_by_test_id("job-run").click()
    expect(page.get_by_test_id("job-verdict")).to_contain_text("Verified", timeout=60_000)
    parsed = json.loads(page.get_by_test_id("job-output").inner_text())
    assert isinstance(parsed, dict)
    expect(page.get_by_test_id("job-busy-delta")).to_have_text(re.compile(r"^[1-9]\d* µs"))
    screenshot(page, "jobs")


def hostile_stream(route: Any) -> None:
    """A fake answer carrying HTML and script, as SSE: only the rendering is under test."""
    pieces = ["Here: <img src=x onerror=\"window.__pwned = 'img'\"> and ",
              "<script>window.__pwned = 'script'</script> and ",
              "[a link](javascript:window.__pwned='link') and **bold**."]  # fmt: skip
    events = [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
              for p in pieces]  # fmt: skip
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 30}})
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    route.fulfill(status=200, headers={"content-type": "text/event-stream"}, body=body)


def test_model_output_renders_as_text_and_runs_nothing(
    page: Any, page_server: ServerProcess
) -> None:
    page.route("**/v1/chat/completions", hostile_stream)
    open_page(page, page_server)
    send(page, "Show me some HTML.")
    expect(page.get_by_test_id("answer-stats")).to_contain_text("30 tokens")
    answer = page.get_by_test_id("answer")
    expect(answer).to_contain_text("<img src=x onerror=")
    expect(answer).to_contain_text("<script>window.__pwned = 'script'</script>")
    assert answer.locator("img, script").count() == 0
    assert answer.locator("strong").inner_text() == "bold"  # Markdown still renders
    link = answer.locator("a")
    assert link.count() == 0 or not (link.get_attribute("href") or "").startswith("javascript")
    if link.count():
        link.click()
    page.wait_for_timeout(200)
    assert page.evaluate("window.__pwned") is None


def test_status_shows_engines_runners_and_unloads(browser: Any, page: Any,
                                                  page_server: ServerProcess) -> None:  # fmt: skip
    open_page(page, page_server)
    send(page, "Name three colours of the rainbow.", max_tokens=64)  # something to chart
    expect(page.get_by_test_id("answer-stats")).to_contain_text("tokens", timeout=60_000)
    page.get_by_test_id("tab-status").click()
    expect(page.get_by_test_id("engines")).to_contain_text("openvino")
    runners = page.get_by_test_id("runners")
    expect(runners).to_contain_text(MODEL)
    expect(runners).to_contain_text("CPU")
    expect(page.get_by_test_id("tokens-chart")).to_be_visible()
    expect(page.get_by_test_id("queue-depth")).to_have_text(re.compile(r"^\d+$"))
    expect(page.get_by_test_id("busy-counter")).to_contain_text("busy")
    caption = page.get_by_test_id("chart-caption")
    expect(caption).to_contain_text("last time to first token", timeout=10_000)
    screenshot(page, "status")
    page.get_by_role("button", name="Unload tiny").click()
    expect(runners).not_to_contain_text("tiny", timeout=10_000)
    assert all(r["model"] != "tiny" for r in
               httpx.get(page_server.base_url + "/engines/ps").json()["runners"])  # fmt: skip
    # Readable at 400 px: nothing wider than the window but the tables' own scrollers.
    narrow = browser.new_page(viewport={"width": 400, "height": 800})
    open_page(narrow, page_server)
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 400
    narrow.close()


@pytest.fixture(scope="module")
def key_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path
) -> Iterator[ServerProcess]:
    store = store_with_tiny(tmp_path_factory.mktemp("key-store"), tiny_gguf)
    process = ServerProcess(store, "--model", "tiny", "--preload", "--api-key", KEY).wait_ready()
    yield process
    process.stop()


def test_with_a_key_the_page_asks_for_it(page: Any, key_server: ServerProcess) -> None:
    assert httpx.get(key_server.base_url + "/").status_code == 200  # the page needs no key
    assert httpx.get(key_server.base_url + "/v1/models").status_code == 401
    page.goto(key_server.base_url + "/")
    form = page.get_by_test_id("key-form")
    expect(form).to_be_visible()
    page.get_by_label("API key").fill("not-the-key")
    page.get_by_test_id("api-key-submit").click()
    expect(page.get_by_test_id("key-message")).to_contain_text("refused that key")
    expect(page.get_by_test_id("key-message")).to_contain_text("invalid API key")
    page.get_by_label("API key").fill(KEY)
    page.get_by_test_id("api-key-submit").click()
    expect(form).to_be_hidden()
    expect(page.get_by_test_id("model-select").locator("option[value='tiny']")).to_be_attached()
    send(page, "Hello there, tiny model.", max_tokens=8)
    expect(page.get_by_test_id("answer-stats")).to_contain_text("tokens", timeout=60_000)
