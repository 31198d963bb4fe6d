"""Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, llama.cpp) via the official SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import httpx2  # the SDK's HTTP client: its errors surface while a body streams
import msgspec
import openai
from openai import AsyncOpenAI

from core import json_input
from core.errors import ApiError, InvalidRequest, NotFound, RateLimited, UpstreamError
from core.providers.base import (
    Completion,
    Finish,
    ModelProvider,
    TokenDelta,
    UpstreamEvent,
)
from core.providers.openai_chunks import ChunkReader, Pushed, ReportedUsage, decode_usage
from core.schemas.chat import ChatCompletionRequest, Usage

_MODELS_TTL_S = 300.0


class TakenBody(Protocol):
    """A streamed response's body that the transport took from httpx2 (``detach_body``):
    read it with ``chunks`` (or, if it has ``push``, have it pushed) and ``close`` it."""

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self, drain: bool = False) -> None:
        """``drain``: the reader saw the stream's end; the rest may be read for reuse."""


class _CompletionChoice(msgspec.Struct):
    message: dict[str, Any]
    finish_reason: str | None = None
    logprobs: Any = None


class _Completion(msgspec.Struct):
    choices: list[_CompletionChoice] = msgspec.field(default_factory=list)
    usage: ReportedUsage | None = None


_json = msgspec.json.Encoder()


class OpenAIProvider(ModelProvider):
    name = "openai"

    def __init__(
        self,
        client: AsyncOpenAI | list[AsyncOpenAI],
        allowed_models: list[str] | None = None,
        stream_read_timeout_s: float | None = 60.0,
        detach_body: Callable[[httpx2.Response], TakenBody | None] | None = None,
    ) -> None:
        # Several clients split the connections into several pools: httpx scans its whole
        # pool each time a request starts or ends, which grows costly with thousands of
        # concurrent streams in one pool.
        self.clients = client if isinstance(client, list) else [client]
        self.client = self.clients[0]
        self._turn = 0
        # None: no per-read timer (a cancel scope per socket read is the costliest thing
        # on the token path); the caller then watches for a silent upstream itself.
        self._stream_timeout = openai.Timeout(10.0, read=stream_read_timeout_s)
        self._allowed = allowed_models or None
        # The transport may take a streamed body from httpx2 (a shorter read path, and the
        # SDK's objects for the request let go of at once); else httpx2 reads it.
        self._detach_body = detach_body
        self._cached: tuple[float, list[str]] | None = None
        # the model list being fetched: every caller meanwhile waits for this one fetch
        # (1,000 streams starting at once, or at each TTL expiry, make one upstream call)
        self._fetching: asyncio.Future[list[str]] | None = None

    async def list_models(self) -> list[str]:
        if self._allowed:
            return list(self._allowed)
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] <= _MODELS_TTL_S:
            return list(cached[1])
        fetching = self._fetching
        # a fetch is shared on its own event loop (another loop, e.g. a test client's,
        # starts its own: a future cannot be awaited across loops)
        if fetching is None or fetching.get_loop() is not asyncio.get_running_loop():
            fetching = self._fetching = asyncio.ensure_future(self._fetch_models())
            fetching.add_done_callback(self._fetched)
        # shielded: one caller cancelled (its client left) does not cancel the others' fetch
        return list(await asyncio.shield(fetching))

    async def _fetch_models(self) -> list[str]:
        try:
            page = await self.client.models.list()
        except openai.APIError as exc:
            raise _translate(exc) from exc
        models = [m.id for m in page.data]
        self._cached = (time.monotonic(), models)
        return models

    def _fetched(self, fetching: asyncio.Future[list[str]]) -> None:
        if self._fetching is fetching:
            self._fetching = None  # a failed fetch is not kept: the next call tries again
        if not fetching.cancelled():
            fetching.exception()  # retrieved here too: every waiter may have gone

    async def stream(
        self, request: ChatCompletionRequest, on_text: Callable[[str], None] | None = None
    ) -> AsyncIterator[UpstreamEvent]:
        """Stream through the SDK (request building, auth, retries, status errors) but
        decode the SSE lines with msgspec: the SDK's per-chunk models are the costliest
        thing on the per-token path. With ``on_text`` and a transport that pushes bodies,
        text deltas go to ``on_text`` instead of being yielded (see the base class)."""
        response: httpx2.Response | None = None
        detached: TakenBody | None = None
        reader = ChunkReader()
        try:
            self._turn += 1
            client = self.clients[self._turn % len(self.clients)]
            body = request.to_openai_kwargs()
            del request  # the stream holds nothing of the request once it is sent
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
            # Through the SDK's client (base URL, auth and default headers, retries, status
            # errors), but the body as it was validated, encoded once by msgspec: not the
            # typed create()'s per-field transform and stdlib JSON (a third of the SDK's
            # cost of starting a stream, more for a long conversation); and the HTTP
            # response itself, without the SDK's response wrappers.
            response = await client.post(
                "/chat/completions",
                cast_to=httpx2.Response,
                content=_json.encode(body),
                stream=True,
                options={"timeout": self._stream_timeout},
            )
            del body
            if self._detach_body is not None:
                detached = self._detach_body(response)
            if detached is not None:
                # The httpx2 response is closed now, not its body: for as long as the reply
                # streams, only the transport's own response stays referenced.
                await response.aclose()
                response = None
            if on_text is not None and detached is not None and hasattr(detached, "push"):
                # Pushed: text deltas go to on_text from the socket's callback as they come;
                # this generator wakes only for anything else (and the end).
                pushed = Pushed(reader, on_text)
                detached.push(pushed.data, pushed.end)
                async for event in pushed.events():
                    yield event
            else:
                chunks: AsyncIterator[bytes]
                if detached is not None:
                    chunks = detached.chunks()
                else:
                    assert response is not None
                    chunks = response.aiter_bytes()
                out: list[UpstreamEvent] = []
                reader.on_text = lambda text: out.append(TokenDelta(text))
                reader.on_event = out.append
                async for raw in chunks:
                    reader.feed(raw)
                    if out:
                        for event in out:
                            yield event
                        out.clear()
                    if reader.done:
                        break
            reason, usage = reader.reason, reader.usage
        except openai.APIError as exc:
            raise _translate(exc) from exc
        except (httpx2.HTTPError, msgspec.DecodeError) as exc:
            raise UpstreamError(f"Upstream stream broke: {exc}") from exc
        finally:
            # Closing the HTTP response stops the upstream generating (or, read to the end,
            # returns the connection to the pool).
            if detached is not None:
                detached.close(drain=reader.done)
            if response is not None:
                await response.aclose()
        yield Finish(reason, usage)

    async def complete(self, request: ChatCompletionRequest) -> Completion:
        """A non-streaming call: the upstream's message with all its fields, its finish
        reason, usage and logprobs as it sent them."""
        self._turn += 1
        client = self.clients[self._turn % len(self.clients)]
        body = request.to_openai_kwargs()
        try:
            response = await client.chat.completions.with_raw_response.create(
                model=body.pop("model"), messages=[], extra_body=body
            )
            payload = json_input.decode(response.content, type=_Completion)
        except openai.APIError as exc:
            raise _translate(exc) from exc
        except (httpx2.HTTPError, msgspec.DecodeError) as exc:
            raise UpstreamError(f"Upstream sent no valid completion: {exc}") from exc
        if not payload.choices:
            raise UpstreamError("Upstream sent a completion without choices.")
        choice = payload.choices[0]
        usage = decode_usage(payload.usage) if payload.usage is not None else Usage(0, 0, 0)
        return Completion(choice.message, choice.finish_reason or "stop", usage, choice.logprobs)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()


def _translate(exc: openai.APIError) -> ApiError:
    """Map SDK errors onto this API's errors, keeping the client-facing status."""
    message = f"Upstream model error: {exc.message}"
    if isinstance(exc, openai.NotFoundError):
        return NotFound(message, code="model_not_found")
    if isinstance(exc, openai.RateLimitError):
        return RateLimited(message, retry_after_s=_retry_after(exc))
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return InvalidRequest(message)
    if isinstance(exc, openai.APIStatusError):
        return UpstreamError(message, retryable=exc.status_code >= 500)
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamError("Upstream model timed out.", status_code=504)
    return UpstreamError(message)


def _retry_after(exc: openai.APIStatusError) -> int:
    try:
        return int(float(exc.response.headers.get("retry-after", "1")))
    except ValueError:
        return 1
