"""The chat page in real headless Chromium against the dev app and the local model."""

from __future__ import annotations

import re
import threading
import time

import pytest

from core.settings import Settings
from tests.e2e.conftest import (
    TTFT_MS,
    LoopServer,
    expected_reply,
    screenshot,
)
from tests.e2e.pagekit import (
    expect,
    last_assistant,
    reply_text,
    send,
    stream_status,
    wait_reply_done,
    wait_words,
)
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.browser

# Expected console noise, and only where a test causes it on purpose:
# - Chromium logs a failed request (EventSource or fetch) while the context is offline as
#   "net::ERR_INTERNET_DISCONNECTED"; the page closes its EventSource on "offline", but a
#   request already in flight at that moment still fails loudly.
OFFLINE_NOISE = r"net::ERR_INTERNET_DISCONNECTED"
# - While the server restarts, reconnect attempts are refused ("ERR_CONNECTION_REFUSED") or
#   answered 503 by the draining node; the browser logs each failed EventSource request.
RESTART_NOISE = r"net::ERR_CONNECTION_REFUSED|responded with a status of 503"


def test_typing_then_streamed_text_ttft_and_markdown(dev_server: ThreadServer, make_page) -> None:
    page, _ = make_page(dev_server.url)
    page.goto("/")
    expect(page.get_by_test_id("connection-status")).to_contain_text("connected")
    expect(page.get_by_test_id("transport")).to_have_value("sse")
    expect(page.locator("[data-testid=transport] option[value=ws]")).to_be_enabled()
    expect(page.get_by_test_id("mic")).to_be_enabled()
    expect(page.get_by_test_id("voice-state")).to_have_text("idle")
    expect(page.get_by_test_id("typing-indicator")).to_be_hidden()

    prompt = "/tokens 24"
    started = send(page, prompt)
    # The indicator shows at once, before any token (the model's TTFT is 300 ms).
    expect(page.get_by_test_id("typing-indicator")).to_be_visible(timeout=TTFT_MS)
    assert reply_text(page) == ""
    expect(page.get_by_test_id("stop")).to_be_enabled()
    # Then text streams in and the indicator goes away.
    wait_words(page, 1)
    expect(page.get_by_test_id("typing-indicator")).to_be_hidden()
    ttft = page.get_by_test_id("ttft").last
    expect(ttft).to_have_text(re.compile(r"^\d+ ms$"))
    ttft_ms = int(ttft.inner_text().split()[0])
    assert TTFT_MS * 0.8 <= ttft_ms <= (time.monotonic() - started) * 1000 + 50
    partial = reply_text(page)
    wait_reply_done(page)
    final = reply_text(page)
    assert final == expected_reply(prompt)
    assert len(partial) < len(final), "the reply was not streamed token by token"
    expect(page.get_by_test_id("send")).to_be_enabled()
    expect(page.get_by_test_id("stop")).to_be_disabled()
    expect(page.locator("#m-ttft")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.locator("#m-ttft-server")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.locator("#m-tps")).to_have_text(re.compile(r"^\d+(\.\d)?$"))
    expect(page.locator("#ttft-chart rect.bar")).to_have_count(1)

    # Markdown renders, model text never becomes HTML; Enter sends (keyboard only).
    evil = (
        "/echo **bold** and `code` <img src=x onerror=window.pwned=1> "
        "<script>window.pwned=2</script> [x](javascript:alert(1)) [ok](https://example.com)"
    )
    box = page.get_by_test_id("composer-input")
    box.fill(evil)
    box.press("Enter")
    wait_reply_done(page, 2)
    expect(page.get_by_test_id("assistant-message")).to_have_count(2)
    reply = page.get_by_test_id("assistant-message").last
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("code")).to_have_text("code")
    assert reply.locator("img, script").count() == 0
    assert reply.locator("a").count() == 1
    assert reply.locator("a").get_attribute("href") == "https://example.com/"
    assert "<img src=x" in reply_text(page)
    assert page.evaluate("window.pwned") is None
    expect(page.get_by_test_id("ttft")).to_have_count(2)
    expect(page.locator("#ttft-chart rect.bar")).to_have_count(2)
    screenshot(page, "chat-desktop.png")


def test_stop_cancels_the_stream(dev_server: ThreadServer, make_page) -> None:
    page, _ = make_page(dev_server.url)
    page.goto("/")
    prompt = "/tokens 300"
    send(page, prompt)
    wait_words(page, 3)
    page.get_by_test_id("composer-input").press("Escape")  # Escape stops, like the button
    wait_reply_done(page)
    msg = last_assistant(page)
    assert msg["finish"] == "cancelled"
    text = reply_text(page)
    assert text and expected_reply(prompt).startswith(text) and text != expected_reply(prompt)
    assert stream_status(dev_server.url, page, msg["streamId"])["status"] == "cancelled"
    expect(page.get_by_test_id("typing-indicator")).to_be_hidden()
    expect(page.locator(".msg.assistant .meta").last).to_contain_text("stopped")
    # The stop button works too (clicked before the first token).
    send(page, "/tokens 300 again")
    expect(page.get_by_test_id("typing-indicator")).to_be_visible()
    page.get_by_test_id("stop").click()
    wait_reply_done(page, 2)
    msg = last_assistant(page)
    assert msg["finish"] == "cancelled"
    assert stream_status(dev_server.url, page, msg["streamId"])["status"] == "cancelled"
    expect(page.get_by_test_id("composer-input")).to_be_focused()


def test_model_error_shows_and_retries(dev_server: ThreadServer, make_page) -> None:
    page, _ = make_page(dev_server.url)
    page.goto("/")
    send(page, "/fail now")  # the local model fails (retryable) after its first token
    wait_reply_done(page)
    meta = page.locator(".msg.assistant .meta").last
    expect(meta).to_contain_text("failed on purpose")
    expect(page.get_by_test_id("typing-indicator")).to_be_hidden()
    meta.get_by_role("button", name="Retry").click()
    wait_reply_done(page)
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)
    expect(page.locator("[data-testid=user-message]")).to_have_count(1)
    expect(page.get_by_role("button", name="Retry")).to_have_count(1)


def test_offline_mid_reply_resumes_exactly(dev_server: ThreadServer, make_page) -> None:
    page, console = make_page(dev_server.url)
    console.allow(OFFLINE_NOISE)
    page.goto("/")
    prompt = "/tokens 60"
    send(page, prompt)
    wait_words(page, 8)
    page.context.set_offline(True)
    status = page.get_by_test_id("connection-status")
    expect(status).to_contain_text("offline")
    frozen = reply_text(page)
    page.wait_for_timeout(800)  # the server keeps generating meanwhile
    assert reply_text(page) == frozen, "no events can arrive while offline"
    page.context.set_offline(False)
    expect(status).to_contain_text(re.compile("reconnecting|connected"))
    wait_reply_done(page)
    assert reply_text(page) == expected_reply(prompt)
    assert last_assistant(page)["finish"] == "stop"
    expect(status).to_contain_text("connected")
    expect(page.locator("#m-resumes")).to_have_text("1")
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)


def test_reload_mid_reply_picks_the_reply_up(dev_server: ThreadServer, make_page) -> None:
    page, _ = make_page(dev_server.url)
    page.goto("/")
    prompt = "/tokens 50"
    send(page, prompt)
    wait_words(page, 6)
    page.reload()
    # The same reply, with what had arrived, continues from the last event id.
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)
    expect(page.get_by_test_id("ttft")).to_have_text(re.compile(r"^\d+ ms$"))
    assert len(reply_text(page).split()) >= 6
    wait_reply_done(page)
    assert reply_text(page) == expected_reply(prompt)
    expect(page.locator("[data-testid=user-message]")).to_have_count(1)
    # A reload after the end shows the finished conversation, nothing re-streams.
    page.reload()
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)
    assert reply_text(page) == expected_reply(prompt)
    expect(page.get_by_test_id("stop")).to_be_disabled()


def test_server_restart_mid_reply(e2e_settings: Settings, make_page) -> None:
    """A node drains (retry: hint, then 503s) and a new one takes its port: no text is lost."""
    first = LoopServer(e2e_settings).start()
    second: LoopServer | None = None
    try:
        page, console = make_page(first.url)
        console.allow(RESTART_NOISE)
        page.goto("/")
        prompt = "/tokens 70"
        send(page, prompt)
        wait_words(page, 6)
        engine = first.app._routes[1][1].state.engine  # the stream service of this dev app
        drained = threading.Event()

        def drain_then_stop() -> None:
            first.run(engine.drain(), timeout=30)  # running producers finish and flush
            first.stop()
            drained.set()

        threading.Thread(target=drain_then_stop, daemon=True).start()
        expect(page.get_by_test_id("connection-status")).to_contain_text("reconnecting")
        assert drained.wait(30)
        second = LoopServer(e2e_settings, port=first.port).start()
        wait_reply_done(page, timeout=20_000)
        assert reply_text(page) == expected_reply(prompt)
        expect(page.get_by_test_id("connection-status")).to_contain_text("connected")
        assert page.evaluate("window.rtaiChat.state.resumes") >= 1
    finally:
        if second is not None:
            second.stop()
        first.stop()


def test_phone_layout(dev_server: ThreadServer, make_page) -> None:
    page, _ = make_page(
        dev_server.url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page.goto("/")
    send(
        page,
        "/echo ### On a phone\n**Short** lines, `code`, a list:\n- one\n- two\n"
        "```python\nprint('<b>not html</b>')\n```",
    )
    wait_reply_done(page)
    reply = page.get_by_test_id("assistant-message").last
    expect(reply.locator("h5")).to_have_text("On a phone")
    expect(reply.locator("li")).to_have_count(2)
    expect(reply.locator("pre code")).to_have_text("print('<b>not html</b>')")
    assert reply.locator("b").count() == 0
    send(page, "/tokens 40")
    wait_words(page, 10)
    for testid in ("composer-input", "send", "stop", "connection-status", "transport"):
        box = page.get_by_test_id(testid).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, testid
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "chat-phone.png")
    wait_reply_done(page, 2)
