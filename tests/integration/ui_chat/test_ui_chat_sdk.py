"""SPEC section 10 through the real AI SDK (`ai` from npm): DefaultChatTransport, the SDK's
Chat (what useChat wraps) and readUIMessageStream against two real nodes, moto and the
local model."""

from __future__ import annotations

import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from core.auth.dev import DevTokens
from tests.integration.ui_chat.conftest import StartNode, chat_id, echo, types, ui
from tests.support.servers import ProcessServer


def test_a_reply_is_the_ui_message_stream(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, _ = cluster
    prompt, answer = echo(12)
    out = ui("send", base=a.url, token=tokens.mint("alice"), chatId=chat_id(), text=prompt)
    assert out["failure"] is None and out["errors"] == []
    assert out["response"]["status"] == 200
    headers = out["response"]["headers"]
    assert headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert headers["content-type"].startswith("text/event-stream")
    chunks = out["chunks"]
    kinds = types(chunks)
    assert kinds[:3] == ["start", "start-step", "text-start"]
    assert kinds[-3:] == ["text-end", "finish-step", "finish"]
    assert set(kinds[3:-3]) == {"text-delta"}
    start = chunks[0]
    assert re.fullmatch(r"[0-9a-f]{32}", start["messageMetadata"]["streamId"])
    assert start["messageId"] and out["message"]["id"] == start["messageId"]
    assert chunks[-1]["finishReason"] == "stop"
    assert out["text"] == answer
    assert out["message"]["metadata"] == {"streamId": start["messageMetadata"]["streamId"]}


def test_the_wire_ends_with_done(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, _ = cluster
    body = {
        "id": chat_id(),
        "model": "local-model",
        "trigger": "submit-message",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "/echo hi"}]}],
    }
    headers = {"authorization": f"Bearer {tokens.mint('alice')}"}
    with httpx.stream(
        "POST", f"{a.url}/stream/v1/ui/chat", json=body, headers=headers, timeout=30
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert lines[-2] == 'data: {"type":"finish","finishReason":"stop"}'


def test_abort_mid_reply_then_resume_on_the_other_node(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    """The SDK's Chat: stop() mid-reply on node A (a closed connection, not a stop), then
    resumeStream() on node B: one assistant message with the whole text, nothing twice."""
    a, b = cluster
    prompt, answer = echo(80)
    out = ui(
        "abortThenResume",
        baseA=a.url,
        baseB=b.url,
        token=tokens.mint("alice"),
        chatId=chat_id(),
        text=prompt,
        abortAfterChars=30,
    )
    assert 30 <= len(out["partial"]) < len(answer) and answer.startswith(out["partial"])
    assert out["status"] == "ready" and out["error"] is None
    roles = [m["role"] for m in out["messages"]]
    assert roles == ["user", "assistant"]
    parts = out["messages"][1]["parts"]
    assert [p["type"] for p in parts] == ["step-start", "text"]
    assert parts[1]["text"] == answer and parts[1]["state"] == "done"
    resume = [s for s in out["seen"] if s["method"] == "GET"]
    assert len(resume) == 1 and resume[0]["url"].startswith(b.url) and resume[0]["status"] == 200


def test_resume_of_a_transport_replays_from_the_first_chunk(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    """reconnectToStream after a dropped read (on the other node, while the reply runs):
    the reply from its first chunk, live to its end: one start, one text part, full text."""
    a, b = cluster
    prompt, answer = echo(60)
    chat, token = chat_id(), tokens.mint("alice")
    first = ui("send", base=a.url, token=token, chatId=chat, text=prompt, stopAfterDeltas=5)
    assert types(first["chunks"])[-1] == "text-delta"  # it was cut mid-reply
    out = ui("resume", base=b.url, token=token, chatId=chat)
    assert out["status"] == 200 and out["failure"] is None and out["errors"] == []
    kinds = types(out["chunks"])
    assert kinds.count("start") == 1 and kinds.count("text-start") == 1
    assert kinds[-1] == "finish"
    assert out["text"] == answer
    # the same chunks as the first read, as far as it went (rendered alike on both nodes)
    assert out["chunks"][: len(first["chunks"])] == first["chunks"]


def test_resume_after_the_reply_ended(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    prompt, answer = echo(15)
    chat, token = chat_id(), tokens.mint("alice")
    live = ui("send", base=a.url, token=token, chatId=chat, text=prompt)
    assert live["text"] == answer
    for node in (b, a):
        again = ui("resume", base=node.url, token=token, chatId=chat)
        assert again["status"] == 200
        assert again["chunks"] == live["chunks"]  # the same reply, chunk for chunk
        assert again["message"]["id"] == live["message"]["id"]


def test_the_newest_reply_is_resumed(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    chat, token = chat_id(), tokens.mint("alice")
    ui("send", base=a.url, token=token, chatId=chat, text="/echo first reply")
    ui("send", base=b.url, token=token, chatId=chat, text="/echo second reply")
    out = ui("resume", base=a.url, token=token, chatId=chat)
    assert out["text"] == "second reply"


def test_nothing_to_resume_is_204(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    chat = chat_id()
    alice, bob = tokens.mint("alice"), tokens.mint("bob")
    assert ui("resume", base=a.url, token=alice, chatId=chat)["status"] == 204  # no reply yet
    ui("send", base=a.url, token=alice, chatId=chat, text="/echo mine")
    assert ui("resume", base=b.url, token=alice, chatId=chat)["status"] == 200
    # another user's chat id: nothing to resume for them (204, not 403/404: nothing leaks)
    assert ui("resume", base=b.url, token=bob, chatId=chat)["status"] == 204
    # and the same id used by bob is bob's own chat, not alice's
    ui("send", base=b.url, token=bob, chatId=chat, text="/echo bobs")
    assert ui("resume", base=a.url, token=bob, chatId=chat)["text"] == "bobs"
    assert ui("resume", base=a.url, token=alice, chatId=chat)["text"] == "mine"


def test_stop_from_the_other_node_ends_the_open_stream(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    token = tokens.mint("alice")
    out = ui(
        "stop",
        base=a.url,
        stopBase=b.url,
        token=token,
        chatId=chat_id(),
        text="/tokens 400",
        stopAfterDeltas=5,
    )
    assert out["stopAnswer"]["status"] == 200
    assert out["stopAnswer"]["body"]["status"] in ("cancelling", "cancelled")
    kinds = types(out["chunks"])
    assert kinds[-4:] == ["text-end", "finish-step", "abort", "finish"]
    assert out["chunks"][-1]["finishReason"] == "stop"
    assert out["errors"] == []
    assert out["deltasAfterStop"] < 100  # of 400: the upstream stopped, the reply did not run on
    stream_id = out["chunks"][0]["messageMetadata"]["streamId"]
    status = httpx.get(
        f"{b.url}/stream/v1/streams/{stream_id}", headers={"authorization": f"Bearer {token}"}
    ).json()
    assert status["status"] == "cancelled"


def test_stop_with_nothing_to_stop_is_404(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, _ = cluster
    response = httpx.post(
        f"{a.url}/stream/v1/ui/chat/{chat_id()}/stop",
        headers={"authorization": f"Bearer {tokens.mint('alice')}"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "chat_not_found"


def test_kill_9_of_the_producing_node_mid_reply(
    cluster: tuple[ProcessServer, ProcessServer], start_node: StartNode, tokens: DevTokens
) -> None:
    """The reply's node dies: a page reloaded on another node gets the stored text, then an
    error chunk its Chat shows (status error), never a stream left open."""
    _, b = cluster
    victim = start_node(NODE_ID="ui-victim")
    prompt, answer = echo(300)
    chat, token = chat_id(), tokens.mint("alice")
    first = ui("send", base=victim.url, token=token, chatId=chat, text=prompt, stopAfterDeltas=8)
    time.sleep(0.8)  # a couple of flushes reach the store
    victim.signal(signal.SIGKILL)
    victim.wait(5)
    raw = ui("resume", base=b.url, token=token, chatId=chat)
    assert raw["status"] == 200 and raw["failure"] is None and not raw["timedOut"]
    kinds = types(raw["chunks"])
    assert kinds[:2] == ["start", "start-step"] and kinds[-1] == "error"
    assert "producer_lost" in raw["chunks"][-1]["errorText"]
    assert any("producer_lost" in e for e in raw["errors"])
    stored = raw["text"]
    assert len(stored) >= len(first["text"]) and answer.startswith(stored) and stored != answer
    page = ui("chatResume", base=b.url, token=token, chatId=chat, userText=prompt)
    assert page["status"] == "error" and "producer_lost" in page["error"]
    assert [m["role"] for m in page["messages"]] == ["user", "assistant"]
    assert answer.startswith(page["messages"][1]["parts"][-1]["text"])


def test_a_ui_reply_is_a_durable_stream(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    """Its streamId is a stream of the service like any other: status and native resume."""
    a, b = cluster
    token = tokens.mint("alice")
    out = ui("send", base=a.url, token=token, chatId=chat_id(), text="/echo as any other")
    stream_id = out["chunks"][0]["messageMetadata"]["streamId"]
    headers = {"authorization": f"Bearer {token}"}
    status = httpx.get(f"{b.url}/stream/v1/streams/{stream_id}", headers=headers).json()
    assert status["status"] == "completed"
    other = httpx.get(
        f"{b.url}/stream/v1/streams/{stream_id}",
        headers={"authorization": f"Bearer {tokens.mint('bob')}"},
    )
    assert other.status_code == 404


def test_a_draining_node_breaks_the_open_stream_and_the_reply_resumes_whole(
    cluster: tuple[ProcessServer, ProcessServer], start_node: StartNode, tokens: DevTokens
) -> None:
    """SIGTERM (a deploy): the open UI stream is broken, not ended cleanly (a clean end would
    read as a finished reply); the reply finishes and flushes, and resumes on another node."""
    _, b = cluster
    node = start_node(NODE_ID="ui-drain")
    prompt, answer = echo(120)  # ~3 s of tokens
    chat, token = chat_id(), tokens.mint("alice")
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(ui, "send", base=node.url, token=token, chatId=chat, text=prompt)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the reply is under way
            with httpx.stream(  # only its status: the body is the whole reply
                "GET",
                f"{node.url}/stream/v1/ui/chat/{chat}/stream",
                headers={"authorization": f"Bearer {token}"},
                timeout=30,
            ) as probe:
                if probe.status_code == 200:
                    break
            time.sleep(0.1)
        time.sleep(0.5)
        node.signal(signal.SIGTERM)
        cut = reading.result(timeout=120)
    assert cut["failure"] is not None  # the connection broke
    assert "finish" not in types(cut["chunks"])
    out = ui("resume", base=b.url, token=token, chatId=chat)
    assert out["text"] == answer and types(out["chunks"])[-1] == "finish"
    assert out["chunks"][: len(cut["chunks"])] == cut["chunks"]
