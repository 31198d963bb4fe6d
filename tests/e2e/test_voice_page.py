"""Voice on the page (SPEC 7, 8) in real headless Chromium with a fake microphone that plays
speech made by espeak-ng at test time, against the dev app's local realtime stand-in.

Skipped while the dev app has no voice path (``POST /api/v1/realtime/client_secrets`` or the
``/stream/v1/realtime`` socket answers 404).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, playwright_sync, screenshot
from tests.e2e.pagekit import dev_token, expect
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.browser

QUESTION = "what is the weather like today"
INTERRUPTION = "stop, tell me about the sea instead"


def speech_wav(path: Path, parts: list[tuple[float, str | None]]) -> Path:
    """A mono 16-bit WAV of espeak-ng speech: ``parts`` is [(silence_s before, text or None)]."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is missing: run scripts/system-deps.sh (make test does)"
    rate = 0
    frames = b""
    for i, (silence_s, text) in enumerate(parts):
        if text is None:
            chunk_rate, chunk = rate or 22050, b""
        else:
            piece = path.with_suffix(f".{i}.wav")
            subprocess.run([espeak, "-s", "150", "-w", str(piece), text], check=True)
            with wave.open(str(piece)) as w:
                assert w.getnchannels() == 1 and w.getsampwidth() == 2
                chunk_rate, chunk = w.getframerate(), w.readframes(w.getnframes())
        rate = rate or chunk_rate
        assert chunk_rate == rate
        frames += b"\0\0" * int(silence_s * rate) + chunk
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def launch(wav: Path) -> Any:
    """Chromium whose microphone plays ``wav`` once (then silence), autoplay allowed."""
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]
    return args


@pytest.fixture
def voice_server(dev_server: ThreadServer) -> ThreadServer:
    token = dev_token(dev_server.url, "e2e-voice-probe")
    res = httpx.post(
        f"{dev_server.url}/api/v1/realtime/client_secrets",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "expires_after": {"anchor": "created_at", "seconds": 60},
            "session": {"type": "realtime"},
        },
        timeout=5,
    )
    if res.status_code == 404:
        pytest.skip(
            "voice: POST /api/v1/realtime/client_secrets is 404 (the voice server has not landed)"
        )
    res.raise_for_status()
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = dev_server.url.replace("http://", "ws://") + "/stream/v1/realtime?model=gpt-realtime"
    try:
        with connect(
            url,
            subprotocols=["realtime", f"openai-insecure-api-key.{res.json()['value']}"],  # type: ignore[list-item]
            open_timeout=5,
        ) as sock:
            sock.close()
    except InvalidStatus as exc:
        if exc.response.status_code == 404:
            pytest.skip(
                "voice: the /stream/v1/realtime socket is 404 (the voice server has not landed)"
            )
        raise
    return dev_server


@pytest.fixture
def voice_page(
    voice_server: ThreadServer, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """``voice_page(parts) -> page``: a fresh Chromium whose fake microphone says ``parts``."""
    browsers: list[Any] = []
    pw = playwright_sync.sync_playwright().start()

    def factory(parts: list[tuple[float, str | None]]) -> Any:
        wav = speech_wav(tmp_path / f"mic-{len(browsers)}.wav", parts)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=launch(wav), headless=True)
        browsers.append(browser)
        context = browser.new_context(
            base_url=voice_server.url, viewport={"width": 1280, "height": 800}
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.errors = errors
        return page

    yield factory
    for browser in browsers:
        browser.close()
    pw.stop()


def voice(page: Any) -> dict[str, Any]:
    return page.evaluate("window.rtaiChat.voice")


@pytest.mark.parametrize("rate", ["24k", "device"])
def test_voice_turn_speaks_then_listens(voice_page: Any, rate: str) -> None:
    """One spoken turn. ``device``: the audio context at the device's rate, so the worklets
    resample 48 kHz <-> 24 kHz (what browsers without a 24 kHz context do)."""
    page = voice_page([(1.0, QUESTION), (4.0, None)])
    page.goto("/?audio=raw" + ("&audio_rate=device" if rate == "device" else ""))
    state = page.get_by_test_id("voice-state")
    expect(state).to_have_text("idle")
    expect(page.get_by_test_id("mic")).to_be_enabled()
    page.get_by_test_id("mic").click()
    expect(page.get_by_test_id("mic")).to_have_attribute("aria-pressed", "true")
    expect(state).to_have_text("listening")
    context_rate = voice(page)["sampleRate"]
    assert (context_rate == 24_000) == (rate == "24k"), context_rate
    # The question is heard, answered by voice: the reply plays, then the page listens again.
    expect(state).to_have_text(re.compile("thinking|speaking"), timeout=20_000)
    expect(state).to_have_text("speaking", timeout=20_000)
    expect(state).to_have_text("listening", timeout=60_000)
    latency = page.get_by_test_id("voice-latency")
    expect(latency).to_have_text(re.compile(r"^\d+ ms$"))
    assert 0 < voice(page)["latencyMs"] < 10_000
    # Both sides in the log: the user's turn and the reply's transcript.
    expect(page.locator(".msg.user.voice")).to_have_count(1)
    reply = page.locator(".msg.assistant.voice [data-testid=assistant-message]")
    expect(reply).to_have_count(1)
    assert reply.inner_text().strip(), "the reply's transcript is shown"
    screenshot(page, f"voice-{rate}.png")
    page.get_by_test_id("mic").click()
    expect(state).to_have_text("idle")
    expect(page.locator("#notice")).to_be_hidden()
    assert not page.errors, page.errors


def test_voice_barge_in_truncates_what_was_heard(voice_page: Any) -> None:
    """A second utterance while the reply plays: playback stops at once, the server is told
    what was heard (conversation.item.truncate accepted: the reply shows "interrupted")."""
    page = voice_page([(1.0, QUESTION), (3.5, INTERRUPTION), (6.0, None)])
    page.goto("/?audio=raw")
    page.get_by_test_id("mic").click()
    state = page.get_by_test_id("voice-state")
    expect(state).to_have_text("speaking", timeout=20_000)
    # The interruption: back to listening while the first reply had more to say.
    expect(state).to_have_text(re.compile("listening|thinking"), timeout=20_000)
    first = page.locator(".msg.assistant.voice").first
    expect(first.locator(".meta")).to_contain_text("interrupted", timeout=10_000)
    # The second question gets its own reply.
    expect(page.locator(".msg.user.voice")).to_have_count(2, timeout=20_000)
    expect(state).to_have_text("speaking", timeout=30_000)
    # A refused truncate (audio_end_ms past the audio sent) would be an `error` event, which
    # the page shows as a notice.
    expect(page.locator("#notice")).to_be_hidden()
    assert not page.errors, page.errors


def test_voice_resumes_after_a_network_drop(voice_page: Any) -> None:
    """Offline while the reply plays, back within the grace: same session, resumed from the
    last event id, the reply goes on to its end."""
    page = voice_page([(1.0, QUESTION), (8.0, None)])
    page.goto("/?audio=raw")
    page.get_by_test_id("mic").click()
    state = page.get_by_test_id("voice-state")
    expect(state).to_have_text("speaking", timeout=20_000)
    session = voice(page)["sessionId"]
    assert session
    page.context.set_offline(True)
    expect(page.locator("#voice-conn")).to_have_text("offline")
    page.wait_for_timeout(1000)
    page.context.set_offline(False)
    page.wait_for_function("() => window.rtaiChat.voice.resumes === 1", timeout=10_000)
    assert voice(page)["sessionId"] == session
    expect(state).to_have_text("listening", timeout=60_000)
    expect(page.locator(".msg.assistant.voice")).to_have_count(1)
    # Only the requests that were in flight when the network went away may fail.
    assert not [e for e in page.errors if "ERR_INTERNET_DISCONNECTED" not in e], page.errors
    expect(page.locator("#notice")).to_be_hidden()


def test_each_sentence_said_is_repeated_in_its_reply(voice_page: Any) -> None:
    """The stand-in hears you (SPEC 7): two different sentences, and each reply begins by
    repeating what was heard, the transcript the page shows for that turn."""
    page = voice_page(
        [(1.0, "what is the weather like today"), (9.0, "tell me about the sea"), (9.0, None)]
    )
    page.goto("/?audio=raw")
    page.get_by_test_id("mic").click()
    state = page.get_by_test_id("voice-state")
    replies = page.locator(".msg.assistant.voice [data-testid=assistant-message]")
    expect(replies).to_have_count(2, timeout=60_000)
    expect(state).to_have_text("listening", timeout=60_000)
    users = page.locator(".msg.user.voice")
    expect(users).to_have_count(2)
    heard = [" ".join(users.nth(i).inner_text().split()) for i in range(2)]
    said = [" ".join(replies.nth(i).inner_text().split()) for i in range(2)]
    for transcript, reply in zip(heard, said, strict=True):
        words = re.findall(r"[a-z']+", transcript.lower())
        assert words, heard
        assert reply.startswith("I heard:"), reply
        assert re.findall(r"[a-z']+", reply.lower())[2 : 2 + len(words)] == words, (heard, said)
    assert heard[0] != heard[1] and said[0] != said[1]
    expect(page.locator("#notice")).to_be_hidden()
    assert not page.errors, page.errors
