"""Browser tests: Debian's headless Chromium (never ``playwright install``) against the dev app.

The dev app (``devstack.app.create_dev_app``: /api, /stream and web/ on one port) runs on a
free port with the local model paced so that a reply lasts a couple of seconds.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvicorn

from core.aws import clients
from core.aws.tables import ensure_tables
from core.providers.local import script_reply
from core.schemas.chat import ChatCompletionRequest
from core.settings import Settings
from devstack.app import create_dev_app
from tests.support.servers import ROOT, ThreadServer, free_port

playwright_sync = pytest.importorskip("playwright.sync_api")

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TTFT_MS = 300
TOKEN_DELAY_MS = 40


def expected_reply(*prompts: str, model: str = "local-model") -> str:
    """The local model's exact reply to a fresh conversation of user ``prompts``.

    (Only for a conversation whose earlier replies are also in the request: here tests send
    one message in a fresh page, so ``prompts`` is that single message.)
    """
    request = msgspec.convert(
        {"model": model, "messages": [{"role": "user", "content": p} for p in prompts]},
        ChatCompletionRequest,
    )
    tokens, _ = script_reply(request)
    return "".join(tokens)


@pytest.fixture(scope="session")
def e2e_settings(aws_env: dict[str, str]) -> Settings:
    s = Settings(
        dynamodb_endpoint_url=aws_env["DYNAMODB_ENDPOINT_URL"],
        s3_endpoint_url=aws_env["S3_ENDPOINT_URL"],
        sqs_endpoint_url=aws_env["SQS_ENDPOINT_URL"],
        local_ttft_ms=TTFT_MS,
        local_token_delay_ms=TOKEN_DELAY_MS,
    )
    ensure_tables(clients.dynamodb(s), s)
    return s


@pytest.fixture(scope="session")
def dev_server(e2e_settings: Settings) -> Iterator[ThreadServer]:
    with ThreadServer(create_dev_app(e2e_settings)) as server:
        yield server


class LoopServer:
    """The dev app on uvicorn in a thread, with its event loop at hand (to drain its engine)."""

    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_dev_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve()

        asyncio.run(main())

    def start(self) -> LoopServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def run(self, coro: Any, timeout: float = 30) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # launch() gives Chromium a fresh temporary profile of its own, removed on close.
    # Module scope: Playwright's sync API marks its event loop as running on the main
    # thread while it lives, which would break the asyncio tests that run after these.
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class ConsoleLog:
    """Console errors and uncaught page errors; tests allow only what they name, explicitly."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            loc = msg.location or {}
            self.errors.append(f"console: {msg.text} @ {loc.get('url', '')}")

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def make_page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``make_page(base_url, **context_options) -> (page, console)``; every page must end
    without an unexpected console error."""
    contexts: list[Any] = []
    logs: list[ConsoleLog] = []

    def factory(base_url: str, **options: Any) -> tuple[Any, ConsoleLog]:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(base_url=base_url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        log = ConsoleLog(page)
        logs.append(log)
        return page, log

    yield factory
    for context in contexts:
        context.close()
    seen = [e for log in logs for e in log.errors]
    if seen:  # every console error, expected or not, kept for the record
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"console-{request.node.name}.log").write_text("\n".join(seen) + "\n")
    problems = [e for log in logs for e in log.unexpected()]
    assert not problems, f"console errors in {request.node.name}: {problems}"


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=False)
    return path
