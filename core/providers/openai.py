"""Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, llama.cpp) via the official SDK."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2  # the SDK's HTTP client: its errors surface while a body streams
import msgspec
import openai
from openai import AsyncOpenAI

from core.errors import ApiError, InvalidRequest, NotFound, RateLimited, UpstreamError
from core.providers.base import Finish, ModelProvider, TokenDelta, UpstreamEvent
from core.schemas.chat import ChatCompletionRequest, Usage

_MODELS_TTL_S = 300.0
_MAX_LINE_BYTES = 1 << 20


# gc=False: decoded per token and dropped at once; they never hold reference cycles.
class _Delta(msgspec.Struct, gc=False):
    content: str | None = None


class _Choice(msgspec.Struct, gc=False):
    delta: _Delta = msgspec.field(default_factory=_Delta)
    finish_reason: str | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class _Chunk(msgspec.Struct, gc=False):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None
    error: dict[str, Any] | None = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)


class OpenAIProvider(ModelProvider):
    name = "openai"

    def __init__(
        self,
        client: AsyncOpenAI | list[AsyncOpenAI],
        allowed_models: list[str] | None = None,
        stream_read_timeout_s: float | None = 60.0,
        read_body: Callable[[httpx2.Response], AsyncIterator[bytes]] | None = None,
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
        # How a streamed body is read: the transport may offer a shorter path than httpx2's.
        self._read_body = read_body or httpx2.Response.aiter_bytes
        self._cached: tuple[float, list[str]] | None = None

    async def list_models(self) -> list[str]:
        if self._allowed:
            return list(self._allowed)
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > _MODELS_TTL_S:
            try:
                page = await self.client.models.list()
            except openai.APIError as exc:
                raise _translate(exc) from exc
            self._cached = (now, [m.id for m in page.data])
        return list(self._cached[1])

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[UpstreamEvent]:
        """Stream through the SDK (request building, auth, retries, status errors) but
        decode the SSE lines with msgspec: the SDK's per-chunk models are the costliest
        thing on the per-token path."""
        reason = "stop"
        usage = Usage(0, 0, 0)
        try:
            # Leaving this block closes the HTTP response: the upstream stops generating.
            self._turn += 1
            client = self.clients[self._turn % len(self.clients)]
            body = request.to_openai_kwargs()
            async with client.chat.completions.with_streaming_response.create(
                model=body.pop("model"),
                # The request was validated when it arrived: it goes out as it is, through
                # extra_body, rather than through the SDK's per-field transform of typed
                # params (a third of the SDK's cost of starting a stream).
                messages=[],
                extra_body={**body, "stream_options": {"include_usage": True}},
                stream=True,
                timeout=self._stream_timeout,
            ) as response:
                buffer = b""
                async for raw in self._read_body(response.http_response):
                    lines = (buffer + raw).split(b"\n") if buffer else raw.split(b"\n")
                    buffer = lines.pop()  # an unfinished line waits for the next read
                    if len(buffer) > _MAX_LINE_BYTES:
                        raise UpstreamError("Upstream sent an SSE line over 1 MiB.")
                    for line in lines:
                        if not line.startswith(b"data:"):
                            continue  # blank separators, comments, event/id fields
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            break
                        chunk = _chunk_decoder.decode(data)
                        if chunk.error is not None:
                            message = chunk.error.get("message")
                            raise UpstreamError(f"Upstream model error: {message}")
                        if chunk.usage is not None:
                            usage = Usage(
                                chunk.usage.prompt_tokens,
                                chunk.usage.completion_tokens,
                                chunk.usage.total_tokens,
                            )
                        for choice in chunk.choices:
                            if choice.delta.content:
                                yield TokenDelta(choice.delta.content)
                            if choice.finish_reason:
                                reason = choice.finish_reason
        except openai.APIError as exc:
            raise _translate(exc) from exc
        except (httpx2.HTTPError, msgspec.DecodeError) as exc:
            raise UpstreamError(f"Upstream stream broke: {exc}") from exc
        yield Finish(reason, usage)

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
