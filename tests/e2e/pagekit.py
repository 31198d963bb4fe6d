"""What the browser tests do with the page: send, read replies, wait, ask the API about a stream.

Shared by every page test (chat over SSE or WebSocket, rooms, voice).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def send(page: Any, text: str) -> float:
    page.get_by_test_id("composer-input").fill(text)
    started = time.monotonic()
    page.get_by_test_id("send").click()
    return started


def reply_text(page: Any) -> str:
    return page.get_by_test_id("assistant-message").last.evaluate("el => el.textContent")


def wait_reply_done(page: Any, count: int = 1, timeout: float = 15_000) -> None:
    """Until ``count`` replies have ended (done or error) and none is streaming."""
    page.wait_for_function(
        "n => window.rtaiChat && !window.rtaiChat.busy"
        " && window.rtaiChat.state.messages.filter(m => m.role === 'assistant').length >= n",
        arg=count,
        timeout=timeout,
    )


def wait_words(page: Any, n: int) -> None:
    page.wait_for_function(
        "n => { const m = document.querySelectorAll('[data-testid=assistant-message]');"
        " const t = m.length ? m[m.length - 1].textContent : '';"
        " return t.trim().split(/\\s+/).filter(Boolean).length >= n; }",
        arg=n,
    )


def page_token(page: Any) -> str:
    return json.loads(page.evaluate("localStorage.getItem('rtai.auth')"))["token"]


def stream_status(base_url: str, page: Any, stream_id: str) -> dict[str, Any]:
    res = httpx.get(
        f"{base_url}/stream/v1/streams/{stream_id}",
        headers={"Authorization": f"Bearer {page_token(page)}"},
        timeout=5,
    )
    res.raise_for_status()
    return res.json()


def last_assistant(page: Any) -> dict[str, Any]:
    state = page.evaluate("window.rtaiChat.state")
    return [m for m in state["messages"] if m["role"] == "assistant"][-1]


def dev_token(base_url: str, sub: str) -> str:
    res = httpx.post(f"{base_url}/api/v1/dev/token", json={"sub": sub}, timeout=5)
    res.raise_for_status()
    return str(res.json()["access_token"])


def skip_unless_route(base_url: str, path: str, what: str, body: Any = None) -> None:
    """Skip the calling test when ``POST path`` is 404 on this server (the feature has not
    landed yet); any other answer means the route exists."""
    token = dev_token(base_url, "e2e-probe")
    res = httpx.post(
        f"{base_url}{path}",
        headers={"Authorization": f"Bearer {token}"},
        json=body if body is not None else {},
        timeout=5,
    )
    if res.status_code == 404:
        pytest.skip(
            f"{what}: POST {path} answers 404 on the dev app (the server side has not landed)"
        )


def page_user(page: Any) -> str:
    """The user id of a page's dev token (each browser context is its own user)."""
    page.wait_for_function("() => window.rtaiChat && window.rtaiChat.me")
    return str(page.evaluate("window.rtaiChat.me"))


def choose_transport(page: Any, name: str) -> None:
    page.get_by_test_id("transport").select_option(name)
    expect(page.get_by_test_id("transport")).to_have_value(name)
