"""Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, llama.cpp) via the official SDK."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

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
    RichDelta,
    TokenDelta,
    UpstreamEvent,
)
from core.schemas.chat import ChatCompletionRequest, Usage

if TYPE_CHECKING:
    from core.providers.aiohttp_transport import DetachedBody

_MODELS_TTL_S = 300.0
_MAX_LINE_BYTES = 1 << 20


# gc=False: decoded per token and dropped at once; they never hold reference cycles.
# A delta decodes into this struct when it has no field but these (most tokens); any other
# field fails the decode (forbid_unknown_fields) and the chunk is decoded whole instead.
class _Delta(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    content: str | None = None
    role: str | None = None
    # fields that are null on a text token; when set, the delta is a RichDelta
    refusal: Any = None
    tool_calls: Any = None
    function_call: Any = None
    reasoning_content: Any = None
    reasoning: Any = None
    audio: Any = None


class _Choice(msgspec.Struct, gc=False):
    delta: _Delta = msgspec.field(default_factory=_Delta)
    finish_reason: str | None = None
    logprobs: Any = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class _Chunk(msgspec.Struct, gc=False):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None
    error: dict[str, Any] | None = None


class _AnyChoice(msgspec.Struct, gc=False):
    delta: dict[str, Any] = msgspec.field(default_factory=dict)
    finish_reason: str | None = None
    logprobs: Any = None


class _AnyChunk(msgspec.Struct, gc=False):
    choices: list[_AnyChoice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None
    error: dict[str, Any] | None = None


_DELTA_OWN = ("role", "content")


class _CompletionChoice(msgspec.Struct):
    message: dict[str, Any]
    finish_reason: str | None = None
    logprobs: Any = None


class _Completion(msgspec.Struct):
    choices: list[_CompletionChoice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None


_json = msgspec.json.Encoder()
_chunk_decoder = msgspec.json.Decoder(_Chunk)
_any_chunk_decoder = msgspec.json.Decoder(_AnyChunk)


def _decode_any_chunk(data: bytes) -> tuple[list[UpstreamEvent], str | None, _Usage | None]:
    """A chunk whose delta carries more than text: every field as the upstream sent it
    (fields sent as null carry nothing and are left out)."""
    chunk = json_input.decode(data, decoder=_any_chunk_decoder)
    if chunk.error is not None:
        raise UpstreamError(f"Upstream model error: {chunk.error.get('message')}")
    out: list[UpstreamEvent] = []
    reason = None
    for choice in chunk.choices:
        raw = choice.delta
        content = raw.get("content")
        text = content if isinstance(content, str) else ""
        fields = {k: v for k, v in raw.items() if k not in _DELTA_OWN and v is not None and v != []}
        if fields or choice.logprobs is not None:
            out.append(RichDelta(text, fields, choice.logprobs))
        elif text:
            out.append(TokenDelta(text))
        if choice.finish_reason:
            reason = choice.finish_reason
    return out, reason, chunk.usage


def _usage(raw: _Usage) -> Usage:
    return Usage(
        raw.prompt_tokens,
        raw.completion_tokens,
        raw.total_tokens,
        raw.prompt_tokens_details,
        raw.completion_tokens_details,
    )


class OpenAIProvider(ModelProvider):
    name = "openai"

    def __init__(
        self,
        client: AsyncOpenAI | list[AsyncOpenAI],
        allowed_models: list[str] | None = None,
        stream_read_timeout_s: float | None = 60.0,
        detach_body: Callable[[httpx2.Response], DetachedBody | None] | None = None,
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
        response: httpx2.Response | None = None
        detached: DetachedBody | None = None
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
            chunks: AsyncIterator[bytes]
            if detached is not None:
                # The httpx2 response is closed now, not its body: for as long as the reply
                # streams, only the transport's own response stays referenced.
                await response.aclose()
                response = None
                chunks = detached.chunks()
            else:
                chunks = response.aiter_bytes()
            buffer = b""
            async for raw in chunks:
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
                    try:
                        chunk = _chunk_decoder.decode(data)
                    except msgspec.ValidationError:
                        chunk = None  # a delta field beyond the usual ones
                    # the per-token path: text only, no dict (n=1: one choice at most)
                    if chunk is not None and chunk.error is None and chunk.choices:
                        choice = chunk.choices[0]
                        delta = choice.delta
                        if (
                            choice.logprobs is None
                            and delta.tool_calls is None
                            and delta.refusal is None
                            and delta.reasoning_content is None
                            and delta.reasoning is None
                            and delta.audio is None
                            and delta.function_call is None
                            and len(chunk.choices) == 1
                        ):
                            if delta.content:
                                yield TokenDelta(delta.content)
                            if choice.finish_reason:
                                reason = choice.finish_reason
                        else:
                            chunk = None  # more than text
                    if chunk is not None and chunk.error is None:
                        reported = chunk.usage
                    else:  # more than text (or an error): decoded whole
                        events, finished, reported = _decode_any_chunk(data)
                        for event in events:
                            yield event
                        if finished:
                            reason = finished
                    if reported is not None:
                        usage = _usage(reported)
        except openai.APIError as exc:
            raise _translate(exc) from exc
        except (httpx2.HTTPError, msgspec.DecodeError) as exc:
            raise UpstreamError(f"Upstream stream broke: {exc}") from exc
        finally:
            # Closing the HTTP response stops the upstream generating (or, read to the end,
            # returns the connection to the pool).
            if detached is not None:
                detached.close()
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
        usage = _usage(payload.usage) if payload.usage is not None else Usage(0, 0, 0)
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
