"""A tiny ASGI router by path prefix that also forwards lifespan events to every app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]


class _Lifespan:
    """Drives one app's lifespan protocol from the outside."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(app, scope))

    async def _run(self, app: ASGIApp, scope: Scope) -> None:
        async def receive() -> Message:
            return await self._inbox.get()

        async def send(message: Message) -> None:
            await self._outbox.put(message)

        try:
            await app(scope, receive, send)
        except Exception:  # an app without lifespan support
            await self._outbox.put({"type": "lifespan.unsupported"})

    async def _step(self, kind: str) -> None:
        await self._inbox.put({"type": f"lifespan.{kind}"})
        reply = await self._outbox.get()
        if reply["type"].endswith(".failed"):
            raise RuntimeError(f"lifespan {kind} failed: {reply.get('message')}")

    async def startup(self) -> None:
        await self._step("startup")

    async def shutdown(self) -> None:
        if not self._task.done():
            await self._step("shutdown")


class PrefixDispatcher:
    def __init__(self, routes: Sequence[tuple[str, ASGIApp]], default: ASGIApp) -> None:
        self._routes = list(routes)
        self._default = default

    def _pick(self, path: str) -> ASGIApp:
        for prefix, app in self._routes:
            if path == prefix or path.startswith(prefix + "/"):
                return app
        return self._default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self._pick(scope["path"])(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        apps = [app for _, app in self._routes] + [self._default]
        runners: list[_Lifespan] = []
        await receive()
        try:
            for app in apps:
                runner = _Lifespan(app, scope)
                await runner.startup()
                runners.append(runner)
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        for runner in reversed(runners):
            await runner.shutdown()
        await send({"type": "lifespan.shutdown.complete"})


async def read_body(receive: Receive) -> bytes:
    """An HTTP request's whole body, from its ASGI ``http.request`` messages."""
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)
