"""A scripted OpenAI-compatible upstream server, for tests, benchmarks and offline demos.

It serves ``POST /v1/chat/completions`` (streaming and not) and ``GET /v1/models`` as a
raw ASGI app, emits tokens at a fixed cadence, and records what a provider does to it:
requests, streams completed, and streams whose client disconnected early (the proof that
cancelling a stream closes the upstream connection).

Each token is ``" w<N>"``; with ``stamp=True`` it is ``" w<N>@<emit time in ns>"`` so a
benchmark can measure added latency end to end.

Failure injection (off unless given): ``failures={"model-id": [429, 429]}`` makes the next
requests for that model answer with those HTTP statuses, in order (an OpenAI-shaped error;
429s carry ``Retry-After: 0``), after which it answers normally. The model must be listed in
``models``. ``stats.injected_failures`` counts them. ``break_after=N`` drops the connection
of every stream after its Nth token, without ending the body (a crashed upstream).

It behaves as OpenAI does where a proxy could lose something (see
:mod:`devstack.upstream_replies`): it refuses, with OpenAI's 400, the conversations OpenAI
refuses (an assistant message with neither content nor tool calls, a ``tool`` message
without ``tool_call_id``...), returns tool calls only when it was sent ``tools`` (streamed as
OpenAI streams them: a first fragment with ``id`` and ``name``, then ``arguments`` alone),
honours ``response_format`` and ``logprobs`` / ``top_logprobs``, and sends a ``refusal`` or
``reasoning_content`` when the prompt asks (``/refuse TEXT``, ``/reason TEXT``). Every
request body is kept as received (``received_bodies``, decoded in ``received``; the last
``record`` of them) so a test can assert what reached it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidRequest
from core.providers.assemble import MessageAssembler
from devstack.dispatch import Receive, Scope, Send, read_body
from devstack.upstream_replies import Reply, check_request, logprobs_of, reply_deltas


@dataclass
class UpstreamStats:
    requests: int = 0
    model_lists: int = 0  # GET /v1/models
    streams_started: int = 0
    streams_completed: int = 0
    disconnects: int = 0
    active: int = 0
    disconnect_events: list[float] = field(default_factory=list)
    injected_failures: int = 0


class ScriptedUpstream:
    def __init__(
        self,
        *,
        ttft_s: float = 0.02,
        interval_s: float = 0.01,
        default_tokens: int = 20,
        models: tuple[str, ...] = ("upstream-model",),
        stamp: bool = False,
        failures: dict[str, list[int]] | None = None,
        break_after: int | None = None,
        record: int = 1000,
    ) -> None:
        self.break_after = break_after
        self.ttft_s = ttft_s
        self.interval_s = interval_s
        self.default_tokens = default_tokens
        self.models = models
        self.stamp = stamp
        self.stats = UpstreamStats()
        self.last_request: dict[str, Any] | None = None
        # the bodies received, as they came (bytes) and decoded, oldest first
        self.received_bodies: deque[bytes] = deque(maxlen=record)
        self.received: deque[dict[str, Any]] = deque(maxlen=record)
        self.failures = {model: list(codes) for model, codes in (failures or {}).items()}

    def token(self, index: int) -> str:
        if self.stamp:
            return f" w{index}@{time.time_ns()}"
        return f" w{index}"

    def expected_text(self, tokens: int) -> str:
        return "".join(f" w{i}" for i in range(tokens))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"].rstrip("/")
        if scope["method"] == "GET" and path.endswith("/models"):
            self.stats.model_lists += 1
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in self.models
            ]
            await _json(send, 200, {"object": "list", "data": data})
            return
        if scope["method"] != "POST" or not path.endswith("/chat/completions"):
            await _json(
                send, 404, {"error": {"message": "not found", "type": "invalid_request_error"}}
            )
            return
        body = await read_body(receive)
        self.stats.requests += 1
        request = json.loads(body)
        self.last_request = request
        self.received_bodies.append(body)
        self.received.append(request)
        if request.get("model") not in self.models:
            await _json(
                send,
                404,
                {"error": {"message": "model not found", "type": "invalid_request_error"}},
            )
            return
        planned = self.failures.get(request["model"])
        if planned:
            status = planned.pop(0)
            self.stats.injected_failures += 1
            kind = "rate_limit_error" if status == 429 else "server_error"
            headers = [(b"retry-after", b"0")] if status == 429 else []
            error = {"message": f"injected failure {status}", "type": kind}
            await _json(send, status, {"error": error}, headers)
            return
        tokens = int(request.get("max_tokens") or request.get("max_completion_tokens") or 0)
        tokens = tokens or self.default_tokens
        try:
            check_request(request)
            reply = reply_deltas(request, tokens, self.token, self.expected_text(tokens))
        except InvalidRequest as exc:
            await _json(send, 400, exc.body())
            return
        if request.get("stream"):
            await self._stream(request, reply, receive, send)
        else:
            await asyncio.sleep(self.ttft_s)
            await _json(send, 200, _completion(request, reply))

    async def _stream(
        self, request: dict[str, Any], reply: Reply, receive: Receive, send: Send
    ) -> None:
        self.stats.streams_started += 1
        self.stats.active += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        emitter = asyncio.create_task(self._emit(request, reply, send))
        watcher = asyncio.create_task(_wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait({emitter, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if watcher in done:
                self.stats.disconnects += 1
                self.stats.disconnect_events.append(time.monotonic())
            else:
                emitter.result()  # an injected break: the server drops the connection
                self.stats.streams_completed += 1
        finally:
            for task in (emitter, watcher):
                task.cancel()
            self.stats.active -= 1

    async def _emit(self, request: dict[str, Any], reply: Reply, send: Send) -> None:
        created = int(time.time())

        async def chunk(payload: dict[str, Any]) -> None:
            data = b"data: " + json.dumps(payload).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})

        base = {
            "id": "chatcmpl-upstream",
            "object": "chat.completion.chunk",
            "created": created,
            "model": request["model"],
        }
        top = _top_logprobs(request)
        await asyncio.sleep(self.ttft_s)
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        for index, delta in enumerate(reply.deltas):
            sent = index + 1
            if index == self.break_after:
                raise ConnectionAbortedError("injected: the upstream dropped the stream")
            if index:  # fixed cadence, not drifting with send time
                await asyncio.sleep(max(0.0, start + index * self.interval_s - loop.time()))
            if self.stamp:  # the reply made this token before the wait: stamp it as sent
                delta = _restamped(delta)
            if index == 0:
                delta = {"role": "assistant", **_first(delta)}
            logprobs = logprobs_of(delta, top) if top is not None else None
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None}
            await chunk({**base, "choices": [choice]})
        final = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": reply.finish_reason}
        await chunk({**base, "choices": [final]})
        usage = {"prompt_tokens": 1, "completion_tokens": sent, "total_tokens": sent + 1}
        await chunk({**base, "choices": [], "usage": usage})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


_STAMP = re.compile(r"@\d{19}")


def _restamped(delta: dict[str, Any]) -> dict[str, Any]:
    """A stamped word token with the time now: the time it is sent."""
    content = delta.get("content")
    if not isinstance(content, str) or "@" not in content:
        return delta
    return {**delta, "content": _STAMP.sub(f"@{time.time_ns()}", content, count=1)}


def _first(delta: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's first delta of a reply without text says so (``content: null``)."""
    return delta if "content" in delta else {"content": None, **delta}


def _top_logprobs(request: dict[str, Any]) -> int | None:
    """``top_logprobs`` when the request asked for ``logprobs``, else None."""
    if not request.get("logprobs"):
        return None
    return int(request.get("top_logprobs") or 0)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _json(
    send: Send,
    status: int,
    payload: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra_headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _completion(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The ``chat.completion`` of a whole reply: the message its deltas make."""
    assembler = MessageAssembler()
    top = _top_logprobs(request)
    sent = 0
    for delta in reply.deltas:
        sent += 1
        fields = {k: v for k, v in delta.items() if k != "content"}
        logprobs = logprobs_of(delta, top) if top is not None else None
        assembler.add(delta.get("content") or "", fields, logprobs)
    message = assembler.message()
    if message.get("refusal") and not message.get("content"):
        message["content"] = None  # OpenAI's refusal carries no content
    return {
        "id": "chatcmpl-upstream",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request["model"],
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": assembler.logprobs(),
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": sent, "total_tokens": sent + 1},
    }
