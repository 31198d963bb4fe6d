"""An OpenAI-compatible upstream that streams a given list of ``delta`` objects verbatim
(tool call fragments, reasoning, refusal, logprobs...), for tests of what passes through.

Without ``tools`` in the request it answers text only, as OpenAI does; every request body
is recorded as received.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from devstack.dispatch import Receive, Scope, Send, read_body


def tool_call_deltas(
    name: str, arguments: str, fragments: int, call_id: str = "call_1", index: int = 0
) -> list[dict[str, Any]]:
    """OpenAI's shape: id, type and name in the first fragment, then ``arguments`` pieces."""
    size = max(1, -(-len(arguments) // fragments))
    first = {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    out: list[dict[str, Any]] = [{"tool_calls": [first]}]
    for start in range(0, len(arguments), size):
        piece = {"index": index, "function": {"arguments": arguments[start : start + size]}}
        out.append({"tool_calls": [piece]})
    return out


class DeltaUpstream:
    def __init__(
        self,
        deltas: list[dict[str, Any]],
        *,
        finish_reason: str = "tool_calls",
        interval_s: float = 0.02,
        model: str = "upstream-model",
        logprobs: bool = False,
    ) -> None:
        self.deltas = deltas
        self.finish_reason = finish_reason
        self.interval_s = interval_s
        self.model = model
        self.logprobs = logprobs
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["method"] == "GET":
            data = [{"id": self.model, "object": "model", "created": 0, "owned_by": "t"}]
            await _send_json(send, {"object": "list", "data": data})
            return
        body = await read_body(receive)
        request = json.loads(body)
        self.requests.append(request)
        deltas = self.deltas if request.get("tools") else [{"content": "no tools, no calls"}]
        reason = self.finish_reason if request.get("tools") else "stop"
        if not request.get("stream"):
            await _send_json(send, self.completion(deltas, reason))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        base = {
            "id": "chatcmpl-u",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": self.model,
        }

        async def chunk(payload: dict[str, Any]) -> None:
            data = b"data: " + json.dumps(payload).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})

        first = {"role": "assistant", "content": None, "refusal": None}
        await chunk({**base, "choices": [{"index": 0, "delta": first, "finish_reason": None}]})
        for n, delta in enumerate(deltas):
            await asyncio.sleep(self.interval_s)
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
            if self.logprobs and request.get("logprobs") and delta.get("content"):
                choice["logprobs"] = {
                    "content": [
                        {
                            "token": delta["content"],
                            "logprob": -0.5 - n,
                            "bytes": None,
                            "top_logprobs": [],
                        }
                    ],
                    "refusal": None,
                }
            await chunk({**base, "choices": [choice]})
        await chunk({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
        usage = {"prompt_tokens": 11, "completion_tokens": 77, "total_tokens": 88}
        await chunk({**base, "choices": [], "usage": usage})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    def completion(self, deltas: list[dict[str, Any]], reason: str) -> dict[str, Any]:
        from core.providers.assemble import MessageAssembler

        assembler = MessageAssembler()
        for delta in deltas:
            assembler.add(delta.get("content") or "", delta)
        message = {**assembler.message(), "annotations": [], "x_vendor": {"kept": True}}
        return {
            "id": "chatcmpl-u",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 77, "total_tokens": 88},
        }


async def _send_json(send: Send, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
