"""A small SSE reader for tests: parses frames as they arrive and timestamps them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseEvent:
    id: int | None
    event: str
    data: str
    at: float

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseResult:
    status: int
    headers: httpx.Headers
    events: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    closed_by_server: bool = False
    body: str = ""

    @property
    def ids(self) -> list[int]:
        return [e.id for e in self.events if e.id is not None]

    @property
    def text(self) -> str:
        return "".join(e.json()["text"] for e in self.events if e.event == "delta")

    def last(self) -> SseEvent:
        return self.events[-1]


def read_sse(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    max_events: int | None = None,
    stop_after_deltas: int | None = None,
    timeout: float = 30.0,
    method: str = "GET",
    json_body: Any = None,
) -> SseResult:
    """Read until the server closes, ``max_events`` events, or ``stop_after_deltas`` deltas."""
    deadline = time.monotonic() + timeout
    with (
        httpx.Client(timeout=httpx.Timeout(timeout, connect=5)) as client,
        client.stream(method, url, headers=headers, json=json_body) as response,
    ):
        result = SseResult(response.status_code, response.headers)
        if response.status_code != 200:
            response.read()
            result.body = response.text
            return result
        buffer = ""
        deltas = 0
        for chunk in response.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                frame, buffer = buffer.split("\n\n", 1)
                event = _parse(frame, result)
                if event is None:
                    continue
                result.events.append(event)
                deltas += event.event == "delta"
                if (max_events and len(result.events) >= max_events) or (
                    stop_after_deltas and deltas >= stop_after_deltas
                ):
                    return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"SSE read timed out after {len(result.events)} events")
        result.closed_by_server = True
        return result


def _parse(frame: str, result: SseResult) -> SseEvent | None:
    event_id: int | None = None
    kind = "message"
    data: list[str] = []
    for line in frame.split("\n"):
        if line.startswith(":"):
            result.comments.append(line[1:].strip())
        elif line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith("retry:"):
            result.retry.append(int(line[6:].strip()))
    if not data:
        return None
    return SseEvent(event_id, kind, "\n".join(data), time.monotonic())
