"""Builds the configured provider (``LLM_PROVIDER``)."""

from __future__ import annotations

from openai import AsyncOpenAI

from core.providers.base import ModelProvider
from core.providers.local import LocalProvider
from core.providers.openai import OpenAIProvider
from core.settings import Settings


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_provider(settings: Settings) -> ModelProvider:
    if settings.provider == "openai":
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
        client = AsyncOpenAI(
            api_key=key,
            base_url=settings.openai_base_url,
            timeout=settings.openai_timeout_s,
            max_retries=settings.openai_max_retries,
        )
        return OpenAIProvider(client, _split(settings.models))
    return LocalProvider(
        _split(settings.models) or _split(settings.local_models),
        ttft_s=settings.local_ttft_ms / 1000,
        token_delay_s=settings.local_token_delay_ms / 1000,
    )
