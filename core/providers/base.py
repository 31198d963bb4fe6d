"""The provider interface: a cancellable stream of deltas, and a whole completion.

A stream is an async iterator of :class:`TokenDelta` items ending with exactly one
:class:`Finish`. Closing it early (``aclose()``, or cancelling the task that iterates it)
must release the upstream call: for HTTP providers the connection is closed, so the
upstream stops generating and billing.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from core.errors import NotFound
from core.schemas.chat import ChatCompletionRequest, Usage, completion_body, new_completion_id


class TokenDelta(NamedTuple):
    """One piece of generated text (a tuple: built once per token, so built cheaply)."""

    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str
    usage: Usage


UpstreamEvent = TokenDelta | Finish


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: str
    usage: Usage

    def body(self, model: str) -> dict[str, Any]:
        """This completion as an OpenAI ``chat.completion`` object."""
        return completion_body(
            completion_id=new_completion_id(),
            model=model,
            text=self.text,
            finish_reason=self.finish_reason,
            usage=self.usage,
        )


class ModelProvider(abc.ABC):
    """One upstream (a scripted local model, or any OpenAI-compatible server)."""

    name: str

    @abc.abstractmethod
    async def list_models(self) -> list[str]:
        """Model ids this provider serves."""

    async def has_model(self, model: str) -> bool:
        return model in await self.list_models()

    async def require_model(self, model: str) -> None:
        """Raise OpenAI's 404 ``model_not_found`` unless this provider serves ``model``."""
        if not await self.has_model(model):
            raise NotFound(
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )

    @abc.abstractmethod
    def stream(self, request: ChatCompletionRequest) -> AsyncIterator[UpstreamEvent]:
        """Deltas as the model produces them, then one :class:`Finish`."""

    async def complete(self, request: ChatCompletionRequest) -> Completion:
        """The whole completion (the default drains :meth:`stream`)."""
        parts: list[str] = []
        finish: Finish | None = None
        stream = self.stream(request)
        try:
            async for event in stream:
                if isinstance(event, TokenDelta):
                    parts.append(event.text)
                else:
                    finish = event
        finally:
            await _aclose(stream)
        if finish is None:  # pragma: no cover - providers always finish
            finish = Finish("stop", Usage(0, 0, 0))
        return Completion("".join(parts), finish.reason, finish.usage)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections."""


async def _aclose(stream: AsyncIterator[UpstreamEvent]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
