"""The chat page with ``transport`` = ``ws`` (SPEC 6, 8): everything the SSE page does, over
one WebSocket, in real headless Chromium against the dev app and the local model.

Skipped while the dev app has no ``/stream/v1/ws`` (``POST /stream/v1/ws/tickets`` is 404).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.e2e.conftest import TTFT_MS, expected_reply
from tests.e2e.pagekit import (
    choose_transport,
    expect,
    last_assistant,
    reply_text,
    send,
    skip_unless_route,
    stream_status,
    wait_reply_done,
    wait_words,
)
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.browser

# Chromium logs a request that fails while the context is offline; the page drops its socket
# on "offline", but a ticket request already in flight still fails loudly.
OFFLINE_NOISE = r"net::ERR_INTERNET_DISCONNECTED"


@pytest.fixture
def ws_server(dev_server: ThreadServer) -> ThreadServer:
    skip_unless_route(dev_server.url, "/stream/v1/ws/tickets", "WebSocket transport")
    return dev_server


def open_ws_page(make_page: Any, server: ThreadServer) -> tuple[Any, Any]:
    page, console = make_page(server.url)
    page.goto("/")
    expect(page.get_by_test_id("connection-status")).to_contain_text("connected")
    choose_transport(page, "ws")
    page.wait_for_function("() => window.rtaiChat.ws === 'connected'")
    return page, console


def test_ws_typing_ttft_streamed_text_and_stop(ws_server: ThreadServer, make_page: Any) -> None:
    page, _ = open_ws_page(make_page, ws_server)
    prompt = "/tokens 24"
    started = send(page, prompt)
    expect(page.get_by_test_id("typing-indicator")).to_be_visible(timeout=TTFT_MS)
    assert reply_text(page) == ""
    expect(page.get_by_test_id("stop")).to_be_enabled()
    wait_words(page, 1)
    expect(page.get_by_test_id("typing-indicator")).to_be_hidden()
    ttft = page.get_by_test_id("ttft").last
    expect(ttft).to_have_text(re.compile(r"^\d+ ms$"))
    ttft_ms = int(ttft.inner_text().split()[0])
    assert TTFT_MS * 0.8 <= ttft_ms <= (time.monotonic() - started) * 1000 + 50
    partial = reply_text(page)
    wait_reply_done(page)
    assert reply_text(page) == expected_reply(prompt)
    assert len(partial) < len(reply_text(page)), "the reply was not streamed token by token"
    msg = last_assistant(page)
    assert msg["finish"] == "stop"
    state = page.evaluate("window.rtaiChat.state")
    assert state["pending"] is None
    expect(page.locator("#m-ttft-server")).to_have_text(re.compile(r"^\d+ ms$"))

    # Stop over the socket (`cancel`): the stream ends cancelled, for the REST API too.
    page.locator("#new-chat").click()  # a fresh conversation: its reply is known exactly
    prompt = "/tokens 300"
    send(page, prompt)
    wait_words(page, 3)
    page.get_by_test_id("composer-input").press("Escape")
    wait_reply_done(page, 1)
    msg = last_assistant(page)
    assert msg["finish"] == "cancelled"
    text = reply_text(page)
    assert text and expected_reply(prompt).startswith(text) and text != expected_reply(prompt)
    assert stream_status(ws_server.url, page, msg["streamId"])["status"] == "cancelled"
    expect(page.locator(".msg.assistant .meta").last).to_contain_text("stopped")
    # Stop before the first token (the stream id is not known yet when clicked).
    send(page, "/tokens 300 again")
    page.get_by_test_id("stop").click()
    wait_reply_done(page, 2)
    msg = last_assistant(page)
    assert msg["finish"] == "cancelled"
    assert stream_status(ws_server.url, page, msg["streamId"])["status"] == "cancelled"


def test_ws_offline_mid_reply_resumes_exactly(ws_server: ThreadServer, make_page: Any) -> None:
    page, console = open_ws_page(make_page, ws_server)
    console.allow(OFFLINE_NOISE)
    prompt = "/tokens 60"
    send(page, prompt)
    wait_words(page, 8)
    page.context.set_offline(True)
    status = page.get_by_test_id("connection-status")
    expect(status).to_contain_text("offline")
    frozen = reply_text(page)
    page.wait_for_timeout(800)  # the server keeps generating meanwhile
    assert reply_text(page) == frozen, "no frame can arrive while offline"
    page.context.set_offline(False)
    # A fresh ticket, a new socket, `resume` after the last seq shown: the exact text.
    wait_reply_done(page)
    assert reply_text(page) == expected_reply(prompt)
    assert last_assistant(page)["finish"] == "stop"
    expect(status).to_contain_text("connected")
    expect(page.locator("#m-resumes")).to_have_text("1")
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)


def test_ws_reload_mid_reply_resumes_by_seq(ws_server: ThreadServer, make_page: Any) -> None:
    page, _ = open_ws_page(make_page, ws_server)
    prompt = "/tokens 50"
    send(page, prompt)
    wait_words(page, 6)
    pending = page.evaluate("window.rtaiChat.state.pending")
    assert pending["transport"] == "ws" and pending["lastEventId"] >= 6
    page.reload()
    expect(page.get_by_test_id("transport")).to_have_value("ws")
    expect(page.get_by_test_id("assistant-message")).to_have_count(1)
    assert len(reply_text(page).split()) >= 6
    wait_reply_done(page)
    assert reply_text(page) == expected_reply(prompt)
    expect(page.locator("[data-testid=user-message]")).to_have_count(1)
    # The same stream, read over SSE by the REST API: it completed.
    assert (
        stream_status(ws_server.url, page, last_assistant(page)["streamId"])["status"]
        == "completed"
    )
