"""The provider interface: a cancellable stream of deltas, and a whole completion.

A stream is an async iterator of :class:`TokenDelta` / :class:`RichDelta` items ending with
exactly one :class:`Finish`. Closing it early (``aclose()``, or cancelling the task that
iterates it) must release the upstream call: for HTTP providers the connection is closed,
so the upstream stops generating and billing.

Most deltas carry text only: a :class:`TokenDelta` (one tuple, no dict, per token). A delta
that carries more (tool call fragments, a refusal, reasoning, audio, logprobs) is a
:class:`RichDelta` with the other fields of OpenAI's ``choices[0].delta`` as they were sent.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from core.errors import NotFound
from core.schemas.chat import ChatCompletionRequest, Usage, completion_body, new_completion_id


class TokenDelta(NamedTuple):
    """One piece of generated text (a tuple: built once per token, so built cheaply)."""

    text: str


class RichDelta(NamedTuple):
    """A delta that carries more than text.

    ``fields`` are the other keys of OpenAI's ``choices[0].delta`` exactly as the upstream
    sent them (``tool_calls`` fragments, ``refusal``, ``reasoning_content``, ``audio``...),
    never ``role`` or ``content`` (content is ``text``). ``logprobs`` is the choice's
    ``logprobs`` object as sent, or None.
    """

    text: str
    fields: dict[str, Any]
    logprobs: Any = None


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str  # the upstream's finish_reason verbatim: stop, length, tool_calls, ...
    usage: Usage


UpstreamEvent = TokenDelta | RichDelta | Finish


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole reply: ``message`` is the assistant message with all its fields (``role``,
    ``content``, ``tool_calls``?, ``refusal``, ``reasoning_content``?, ...)."""

    message: dict[str, Any]
    finish_reason: str
    usage: Usage
    logprobs: Any = None

    @property
    def text(self) -> str:
        content = self.message.get("content")
        return content if isinstance(content, str) else ""

    def body(self, model: str, completion_id: str | None = None) -> dict[str, Any]:
        """This completion as an OpenAI ``chat.completion`` object."""
        return completion_body(
            completion_id=completion_id or new_completion_id(),
            model=model,
            message=self.message,
            finish_reason=self.finish_reason,
            usage=self.usage,
            logprobs=self.logprobs,
        )


class ModelProvider(abc.ABC):
    """One upstream (a scripted local model, or any OpenAI-compatible server)."""

    name: str

    @abc.abstractmethod
    async def list_models(self) -> list[str]:
        """Model ids this provider serves."""

    async def has_model(self, model: str) -> bool:
        return model in await self.list_models()

    async def check(self, request: ChatCompletionRequest) -> None:
        """Everything this provider refuses about ``request``, before any reply starts: an
        unknown model (404) and what :meth:`refuse` finds (a 400 naming the param). Called
        before admission on every path, so a streamed call is refused with its status, not
        with an error event after a 200."""
        await self.require_model(request.model)
        self.refuse(request)

    def refuse(self, request: ChatCompletionRequest) -> None:  # noqa: B027 - optional hook
        """Raise the provider's own 4xx for a request it cannot answer (default: none: an
        HTTP upstream refuses for itself, and its 400 reaches the client)."""

    async def require_model(self, model: str) -> None:
        """Raise OpenAI's 404 ``model_not_found`` unless this provider serves ``model``."""
        if not await self.has_model(model):
            raise NotFound(
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )

    @abc.abstractmethod
    def stream(
        self, request: ChatCompletionRequest, on_text: Callable[[str], None] | None = None
    ) -> AsyncIterator[UpstreamEvent]:
        """Deltas as the model produces them, then one :class:`Finish`.

        ``on_text``: a provider that can may call it with the text of each text-only delta
        instead of yielding a :class:`TokenDelta`, from wherever the text arrives (a socket
        callback), in order with what it yields. It must not block. Providers that cannot
        yield every delta, as without it."""

    async def complete(self, request: ChatCompletionRequest) -> Completion:
        """The whole completion (the default drains :meth:`stream` into one message)."""
        from core.providers.assemble import MessageAssembler

        assembler = MessageAssembler()
        finish: Finish | None = None
        stream = self.stream(request)
        try:
            async for event in stream:
                if isinstance(event, TokenDelta):
                    assembler.add_text(event.text)
                elif isinstance(event, RichDelta):
                    assembler.add(event.text, event.fields, event.logprobs)
                else:
                    finish = event
        finally:
            await _aclose(stream)
        if finish is None:  # pragma: no cover - providers always finish
            finish = Finish("stop", Usage(0, 0, 0))
        return Completion(assembler.message(), finish.reason, finish.usage, assembler.logprobs())

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections."""


async def _aclose(stream: AsyncIterator[UpstreamEvent]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
