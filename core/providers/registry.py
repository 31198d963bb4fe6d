"""Builds the configured provider (``LLM_PROVIDER``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.providers.base import ModelProvider
from core.providers.local import LocalProvider
from core.settings import Settings

if TYPE_CHECKING:
    import httpx2
    from openai import AsyncOpenAI


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_provider(
    settings: Settings,
    *,
    stream_read_timeout_s: float | None = 60.0,
    http_client: str = "httpx",
) -> ModelProvider:
    """The configured provider. ``stream_read_timeout_s=None`` drops the per-read timeout of
    streams, for callers that watch upstream silence themselves (the stream engine).
    ``http_client`` is the transport used when ``OPENAI_HTTP_CLIENT`` is ``auto``."""
    if settings.provider == "openai":
        # The SDK (and its HTTP stack) only for this provider: a large share of a cold start.
        import httpx2
        from openai import DefaultAsyncHttpxClient

        from core.providers.openai import OpenAIProvider
        from core.providers.openai_client import OpenAIClient

        key = settings.openai_key() or "unused"  # by ARN: read now, at the first model call

        def sdk(http: httpx2.AsyncClient) -> AsyncOpenAI:
            return OpenAIClient(
                api_key=key,
                base_url=settings.openai_base_url,
                timeout=settings.openai_timeout_s,
                max_retries=settings.openai_max_retries,
                http_client=http,
            )

        models = _split(settings.models)
        kind = http_client if settings.openai_http_client == "auto" else settings.openai_http_client
        if kind == "push":
            from core.providers.push_transport import PushTransport, take_body

            # One upstream connection per running stream, its body pushed to the stream.
            push = PushTransport(max_connections=settings.openai_max_connections)
            client = sdk(DefaultAsyncHttpxClient(transport=push))
            return OpenAIProvider(client, models, stream_read_timeout_s, detach_body=take_body)
        if kind == "aiohttp":
            from core.providers.aiohttp_transport import AiohttpTransport, detach_body

            # One upstream connection per running stream; aiohttp's pool hands them out
            # in O(1), so one pool holds them all.
            transport = AiohttpTransport(max_connections=settings.openai_max_connections)
            client = sdk(DefaultAsyncHttpxClient(transport=transport))
            return OpenAIProvider(client, models, stream_read_timeout_s, detach_body=detach_body)
        # httpx scans its whole pool each time a request starts or ends: the connections
        # are spread over several pools. The SDK's default pool (1,000) would make stream
        # 1,001 wait for a connection.
        shards = settings.openai_pool_shards
        per_shard = max(1, settings.openai_max_connections // shards)
        limits = httpx2.Limits(
            max_connections=per_shard,
            max_keepalive_connections=min(32, per_shard),
            keepalive_expiry=30.0,
        )
        clients = [sdk(DefaultAsyncHttpxClient(limits=limits)) for _ in range(shards)]
        return OpenAIProvider(clients, models, stream_read_timeout_s)
    return LocalProvider(
        _split(settings.models) or _split(settings.local_models),
        ttft_s=settings.local_ttft_ms / 1000,
        token_delay_s=settings.local_token_delay_ms / 1000,
        max_reply_tokens=settings.max_output_tokens,
    )
