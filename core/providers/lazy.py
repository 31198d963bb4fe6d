"""A provider built at its first use, so a process that never calls the model never pays
for importing its SDK (the REST Lambda's cold start: files, batches, health)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from core.providers.base import Completion, ModelProvider, UpstreamEvent
from core.schemas.chat import ChatCompletionRequest


class LazyProvider(ModelProvider):
    def __init__(self, build: Callable[[], ModelProvider]) -> None:
        self._build = build
        self._provider: ModelProvider | None = None

    @property
    def provider(self) -> ModelProvider:
        """The real provider (built, and its SDK imported, on the first call)."""
        if self._provider is None:
            self._provider = self._build()
        return self._provider

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.provider.name

    async def list_models(self) -> list[str]:
        return await self.provider.list_models()

    async def has_model(self, model: str) -> bool:
        return await self.provider.has_model(model)

    def refuse(self, request: ChatCompletionRequest) -> None:
        self.provider.refuse(request)

    def stream(
        self, request: ChatCompletionRequest, on_text: Callable[[str], None] | None = None
    ) -> AsyncIterator[UpstreamEvent]:
        return self.provider.stream(request, on_text)

    async def complete(self, request: ChatCompletionRequest) -> Completion:
        return await self.provider.complete(request)

    async def aclose(self) -> None:
        if self._provider is not None:
            await self._provider.aclose()
