"""Rooms on the page (SPEC 6, 8): two users in two browser contexts share one room.

Skipped while the dev app has no ``/stream/v1/ws`` (``POST /stream/v1/ws/tickets`` is 404).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import screenshot
from tests.e2e.pagekit import expect, page_user, skip_unless_route
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.browser


@pytest.fixture
def rooms_server(dev_server: ThreadServer) -> ThreadServer:
    skip_unless_route(dev_server.url, "/stream/v1/ws/tickets", "rooms over WebSocket")
    return dev_server


def members(page: Any) -> list[str]:
    return sorted(
        page.locator("[data-testid=room-members] [data-user]").evaluate_all(
            "els => els.map(e => e.dataset.user)"
        )
    )


def assistant_text(page: Any) -> str:
    return page.get_by_test_id("assistant-message").last.evaluate("el => el.textContent")


def wait_room_idle(page: Any, replies: int) -> None:
    page.wait_for_function(
        "n => window.rtaiChat.room && !window.rtaiChat.room.busy"
        " && document.querySelectorAll('[data-testid=assistant-message]').length >= n",
        arg=replies,
        timeout=15_000,
    )


def test_two_users_share_a_room(rooms_server: ThreadServer, make_page: Any) -> None:
    alice, _ = make_page(rooms_server.url)
    bob, _ = make_page(rooms_server.url)
    alice.goto("/")
    bob.goto("/")
    alice_id, bob_id = page_user(alice), page_user(bob)
    assert alice_id != bob_id

    # Alice creates a room: its id in the field and in the URL, a link to share.
    alice.get_by_test_id("room-create").click()
    expect(alice).to_have_url(re.compile(r"#room=[^&]+$"))
    link = alice.url
    room_id = link.split("#room=", 1)[1]
    expect(alice.get_by_test_id("room")).to_have_value(room_id)
    expect(alice.get_by_test_id("transport")).to_have_value("ws")
    expect(alice.locator("[data-testid=room-members] [data-user]")).to_have_count(1)
    assert members(alice) == [alice_id]
    expect(alice.get_by_test_id("room-typing")).to_have_text("")

    # Bob is not a member yet: the link does not open the room for him.
    bob.goto(link)
    expect(bob.locator("#notice")).to_contain_text("not one of its members")
    expect(bob.locator("[data-testid=room-members] [data-user]")).to_have_count(0)

    # Alice adds Bob; the link now works, and each sees the other present.
    alice.get_by_test_id("room-add-member").fill(bob_id)
    alice.get_by_test_id("room-add-member-submit").click()
    expect(alice.locator("#room-add-status")).to_have_text(f"{bob_id} added")
    bob.goto("/")
    bob.goto(link)
    expect(bob.get_by_test_id("room")).to_have_value(room_id)
    expect(bob.locator("[data-testid=room-members] [data-user]")).to_have_count(2)
    expect(alice.locator("[data-testid=room-members] [data-user]")).to_have_count(2)
    assert members(alice) == members(bob) == sorted([alice_id, bob_id])

    # Bob types: Alice sees his name in room-typing; it clears when he sends.
    bob.get_by_test_id("composer-input").press_sequentially("/tokens 40", delay=30)
    expect(alice.get_by_test_id("room-typing")).to_contain_text(bob_id)
    expect(bob.get_by_test_id("room-typing")).to_have_text("")
    bob.get_by_test_id("send").click()
    expect(alice.get_by_test_id("room-typing")).to_have_text("")

    # His message reaches Alice with his name; the reply streams live to both, token by token.
    mine = bob.locator("article.msg.user").last
    theirs = alice.locator("article.msg.user").last
    expect(theirs.get_by_test_id("user-message")).to_have_text("/tokens 40")
    expect(theirs.get_by_test_id("message-author")).to_have_text(bob_id)
    expect(mine.get_by_test_id("message-author")).to_have_text(bob_id)
    alice.wait_for_function(
        "() => { const m = document.querySelectorAll('[data-testid=assistant-message]');"
        " return m.length && m[m.length - 1].textContent.trim().split(/\\s+/).length >= 5; }"
    )
    partial = assistant_text(alice)
    assert alice.evaluate("window.rtaiChat.room.busy"), "Alice sees the reply while it streams"
    wait_room_idle(alice, 1)
    wait_room_idle(bob, 1)
    final = assistant_text(alice)
    assert final and len(partial) < len(final), "the reply reached Alice token by token"
    assert assistant_text(bob) == final
    for page in (alice, bob):
        expect(page.get_by_test_id("assistant-message")).to_have_count(1)
        expect(page.locator("[data-testid=user-message]")).to_have_count(1)
        expect(page.locator("article.msg.assistant [data-testid=message-author]")).to_have_text(
            "assistant"
        )
    expect(bob.get_by_test_id("ttft").last).to_have_text(re.compile(r"^\d+ ms$"))

    # Alice answers; Bob sees it with her name, and a second reply for both.
    alice.get_by_test_id("composer-input").fill("/tokens 12")
    alice.get_by_test_id("composer-input").press("Enter")
    expect(bob.locator("article.msg.user").last.get_by_test_id("message-author")).to_have_text(
        alice_id
    )
    wait_room_idle(bob, 2)
    wait_room_idle(alice, 2)
    assert assistant_text(alice) == assistant_text(bob)
    screenshot(alice, "room-alice.png")

    # A reload rejoins from the URL and gets the whole conversation in `joined`.
    bob.reload()
    expect(bob.get_by_test_id("assistant-message")).to_have_count(2)
    expect(bob.locator("[data-testid=user-message]")).to_have_count(2)
    assert assistant_text(bob) == assistant_text(alice)

    # Bob leaves (his page closes): Alice sees him go.
    bob.close()
    expect(alice.locator("[data-testid=room-members] [data-user]")).to_have_count(1, timeout=10_000)
    assert members(alice) == [alice_id]


def test_room_reply_joined_mid_stream_and_stopped_by_another_member(
    rooms_server: ThreadServer, make_page: Any
) -> None:
    """A member who opens the room while a reply runs gets it from its start (joined.streams,
    resume by seq) and can stop it for everyone."""
    alice, _ = make_page(rooms_server.url)
    bob, _ = make_page(rooms_server.url)
    alice.goto("/")
    bob.goto("/")
    bob_id = page_user(bob)
    alice.get_by_test_id("room-create").click()
    expect(alice).to_have_url(re.compile(r"#room=[^&]+$"))
    alice.get_by_test_id("room-add-member").fill(bob_id)
    alice.get_by_test_id("room-add-member-submit").click()
    expect(alice.locator("#room-add-status")).to_have_text(f"{bob_id} added")

    # Typing that stops without a send clears by itself (active false after the idle time,
    # or the TYPING_TTL_S expiry).
    bob.goto(alice.url)
    expect(alice.locator("[data-testid=room-members] [data-user]")).to_have_count(2)
    bob.get_by_test_id("composer-input").press_sequentially("hel", delay=50)
    expect(alice.get_by_test_id("room-typing")).to_contain_text(bob_id)
    expect(alice.get_by_test_id("room-typing")).to_have_text("", timeout=8_000)
    bob.goto("/")

    alice.get_by_test_id("composer-input").fill("/tokens 300")
    alice.get_by_test_id("send").click()
    alice.wait_for_function(
        "() => { const m = document.querySelectorAll('[data-testid=assistant-message]');"
        " return m.length && m[m.length - 1].textContent.trim().split(/\\s+/).length >= 5; }"
    )
    bob.goto(alice.url)
    expect(bob.get_by_test_id("assistant-message")).to_have_count(1)
    bob.wait_for_function(
        "() => { const m = document.querySelectorAll('[data-testid=assistant-message]');"
        " return m.length && m[m.length - 1].textContent.trim().split(/\\s+/).length >= 8; }"
    )
    # Bob's copy starts where Alice's did: the whole reply, not only what came after he joined.
    assert assistant_text(alice).startswith(assistant_text(bob)[:20])
    expect(bob.get_by_test_id("stop")).to_be_enabled()
    bob.get_by_test_id("stop").click()
    wait_room_idle(alice, 1)
    wait_room_idle(bob, 1)
    for page in (alice, bob):
        expect(page.locator(".msg.assistant .meta").last).to_contain_text("stopped")
    assert assistant_text(alice) == assistant_text(bob)


def test_member_offline_mid_reply_catches_up_exactly(
    rooms_server: ThreadServer, make_page: Any
) -> None:
    """A member whose network drops while a room reply streams gets, once back, the same text
    as the member who stayed: rejoined, resumed by seq, nothing twice."""
    alice, _ = make_page(rooms_server.url)
    bob, bob_console = make_page(rooms_server.url)
    bob_console.allow(r"net::ERR_INTERNET_DISCONNECTED")
    alice.goto("/")
    bob.goto("/")
    bob_id = page_user(bob)
    alice.get_by_test_id("room-create").click()
    expect(alice).to_have_url(re.compile(r"#room=[^&]+$"))
    alice.get_by_test_id("room-add-member").fill(bob_id)
    alice.get_by_test_id("room-add-member-submit").click()
    expect(alice.locator("#room-add-status")).to_have_text(f"{bob_id} added")
    bob.goto(alice.url)
    expect(alice.locator("[data-testid=room-members] [data-user]")).to_have_count(2)

    alice.get_by_test_id("composer-input").fill("/tokens 80")
    alice.get_by_test_id("send").click()
    bob.wait_for_function(
        "() => { const m = document.querySelectorAll('[data-testid=assistant-message]');"
        " return m.length && m[m.length - 1].textContent.trim().split(/\\s+/).length >= 6; }"
    )
    bob.context.set_offline(True)
    expect(bob.get_by_test_id("connection-status")).to_contain_text("offline")
    frozen = assistant_text(bob)
    bob.wait_for_timeout(1000)
    assert assistant_text(bob) == frozen
    bob.context.set_offline(False)
    wait_room_idle(alice, 1)
    wait_room_idle(bob, 1)
    assert assistant_text(bob) == assistant_text(alice)
    assert len(assistant_text(bob)) > len(frozen)
    expect(bob.get_by_test_id("assistant-message")).to_have_count(1)
    expect(bob.locator("[data-testid=user-message]")).to_have_count(1)
    expect(bob.get_by_test_id("connection-status")).to_contain_text("connected")
    expect(bob.locator("[data-testid=room-members] [data-user]")).to_have_count(2)
