"""A built-in scripted model: deterministic text, realistic pacing, no API key.

The reply is a pure function of the prompt and the token limit (see :func:`script_reply`),
so tests can assert the exact text. Pacing mimics a hosted model: a time to first token,
then one token every ``token_delay`` seconds.

Prompts that start with a directive steer the script, for demos and tests:
``/echo TEXT`` replies TEXT; ``/tokens N`` replies with exactly N tokens;
``/fail`` fails with a retryable upstream error after the first token.

It speaks tools and structured output (the plan of :mod:`core.providers.local_tools`):
``/tool NAME {JSON}`` with ``tools`` calls ``NAME``, streamed as ``tool_calls`` fragments
paced like tokens; ``tool_choice`` ``required`` or naming a function calls it with
arguments built from its schema; after ``tool`` results it answers quoting them;
``response_format`` gets a JSON object or a document valid against its schema. Image,
audio and file parts are acknowledged in the reply (``[image]``, ``[audio]``, ``[file]``).
A plain text request never pays for any of it (one check of four fields).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import msgspec

from core.errors import UpstreamError
from core.providers.base import Finish, ModelProvider, RichDelta, TokenDelta, UpstreamEvent
from core.providers.local_tools import (
    Plan,
    ReplyKind,
    json_object_text,
    json_pieces,
    media_marks,
    plan_reply,
    results_text,
    tool_call_fragments,
)
from core.schemas.chat import ChatCompletionRequest, Usage

_CORPUS = (
    "Streaming keeps people reading while the model is still thinking.",
    "The first token matters more than the last one.",
    "A resumed stream picks up exactly where the network dropped it.",
    "Proxies that buffer turn a live answer into a long silence.",
    "Keepalive comments hold idle connections open through every hop.",
    "When nobody is listening, the upstream call is cancelled to save tokens.",
    "Each event carries an id, so a client can ask for what it missed.",
    "Sequence numbers make gaps and duplicates easy to spot.",
    "DynamoDB keeps the events of every stream until their time to live runs out.",
    "A typing indicator tells the user the system is alive.",
    "Latency is measured from the request to the first byte on the wire.",
    "Short sentences stream well and read well on a phone.",
)
# A token is a word with the whitespace before it. Words are found with ``\S+`` (linear:
# a whitespace character fails at once); the classic ``\s*\S+`` rescans a run of trailing
# whitespace from every position in it (quadratic: 20,000 spaces took seconds).
_WORD_RE = re.compile(r"\S+")
_TOKENS_DIRECTIVE = re.compile(r"/tokens\s+(\d+)")
_DEFAULT_TOKENS = 48
# Upper bound on any reply when neither the request nor the provider sets one (the
# default of MAX_OUTPUT_TOKENS).
DEFAULT_MAX_REPLY_TOKENS = 16_384
# Prompts are counted in slices of this many characters, yielding to the event loop in
# between, so a 1 MiB prompt never holds the loop for more than a few milliseconds.
_COUNT_SLICE_CHARS = 32_768


def iter_tokens(text: str) -> Iterator[str]:
    """The local model's tokens of ``text``, lazily (trailing whitespace is dropped)."""
    start = 0
    for match in _WORD_RE.finditer(text):
        yield text[start : match.end()]
        start = match.end()


def count_tokens(text: str) -> int:
    """The local model's tokenizer: a token is a word with its leading whitespace."""
    return len(_WORD_RE.findall(text))


async def count_tokens_yielding(text: str) -> int:
    """:func:`count_tokens`, yielding to the event loop between slices of a long text."""
    if len(text) <= _COUNT_SLICE_CHARS:
        return count_tokens(text)
    total = 0
    for start in range(0, len(text), _COUNT_SLICE_CHARS):
        end = start + _COUNT_SLICE_CHARS
        total += count_tokens(text[start:end])
        # A word cut in two by the slice boundary was counted twice.
        if start and not text[start - 1].isspace() and not text[start].isspace():
            total -= 1
        await asyncio.sleep(0)
    return total


# Each sentence's tokens, tokenized once: as the first sentence, and after another one.
_FIRST_SENTENCE_TOKENS = tuple(tuple(iter_tokens(s)) for s in _CORPUS)
_SENTENCE_TOKENS = tuple(tuple(iter_tokens(" " + s)) for s in _CORPUS)


def _wanted_tokens(prompt: str, cap: int) -> int:
    """``/tokens N`` -> N, bounded by ``cap`` before anything is built (any digit count)."""
    match = _TOKENS_DIRECTIVE.match(prompt)
    if not match:
        return _DEFAULT_TOKENS
    digits = match.group(1).lstrip("0") or "0"
    # More digits than the cap has: certainly above it (and int() of >4,300 digits raises).
    return cap + 1 if len(digits) > len(str(cap)) else min(int(digits), cap + 1)


@dataclass(frozen=True, slots=True)
class Script:
    """The local model's whole reply to a request: its deltas and its finish reason."""

    deltas: list[TokenDelta | RichDelta]
    finish_reason: str


def script(
    request: ChatCompletionRequest, max_reply_tokens: int = DEFAULT_MAX_REPLY_TOKENS
) -> Script:
    """The deltas the local model answers ``request`` with (a 400 for a bad tool request).

    At most ``min(max_tokens, max_reply_tokens)`` deltas are ever sent ("length" when the
    script wanted more), whatever the prompt asks for.
    """
    limit = request.output_token_limit
    cap = max_reply_tokens if limit is None else min(limit, max_reply_tokens)
    plan = _plan(request)
    if plan is not None and plan.kind is ReplyKind.TOOL_CALLS:
        fragments = itertools.islice(tool_call_fragments(plan.calls), cap + 1)
        deltas: list[TokenDelta | RichDelta] = [RichDelta("", {"tool_calls": f}) for f in fragments]
        reason = "tool_calls"
    else:
        tokens, reason = _text_reply(request, plan, cap)
        deltas = [TokenDelta(token) for token in tokens]
    if len(deltas) > cap:
        return Script(deltas[:cap], "length")
    return Script(deltas, reason)


def script_reply(
    request: ChatCompletionRequest, max_reply_tokens: int = DEFAULT_MAX_REPLY_TOKENS
) -> tuple[list[str], str]:
    """The text the local model answers ``request`` with, as tokens, and the finish reason
    (a reply of tool calls has no text)."""
    reply = script(request, max_reply_tokens)
    return [d.text for d in reply.deltas if isinstance(d, TokenDelta)], reply.finish_reason


def _plan(request: ChatCompletionRequest) -> Plan | None:
    """The tool / JSON plan, only for requests that ask for one (plain text skips it)."""
    last = request.messages[-1] if request.messages else None
    if (
        request.tools is None
        and request.response_format is None
        and (last is None or last.role != "tool")
    ):
        return None
    return plan_reply(request.to_openai_kwargs())


def _text_reply(
    request: ChatCompletionRequest, plan: Plan | None, cap: int
) -> tuple[list[str], str]:
    """The tokens of a text reply (at most ``cap + 1``), and "stop"."""
    if plan is not None and plan.kind is ReplyKind.TOOL_RESULTS:
        return list(itertools.islice(iter_tokens(results_text(plan.results)), cap + 1)), "stop"
    if plan is not None and plan.document is not None:  # json_schema
        return json_pieces(plan.document)[: cap + 1], "stop"
    tokens = _acknowledged(request, _own_text(request, cap))
    if plan is not None:  # json_object: the text, as a JSON object
        return json_pieces(json_object_text("".join(tokens)))[: cap + 1], "stop"
    return tokens, "stop"


def _own_text(request: ChatCompletionRequest, cap: int) -> list[str]:
    prompt = request.messages[-1].text().strip() if request.messages else ""
    if prompt.startswith("/echo "):
        return list(itertools.islice(iter_tokens(prompt[len("/echo ") :]), cap + 1))
    wanted = _wanted_tokens(prompt, cap)
    digest = hashlib.sha256(request.prompt_text().encode()).digest()
    tokens: list[str] = []
    i = 0
    while len(tokens) < wanted:
        pick = digest[i % len(digest)] % len(_CORPUS)
        tokens.extend(_SENTENCE_TOKENS[pick] if tokens else _FIRST_SENTENCE_TOKENS[pick])
        i += 1
    return tokens[:wanted]


def _acknowledged(request: ChatCompletionRequest, tokens: list[str]) -> list[str]:
    """``[image]`` (``[audio]``, ``[file]``) for each such part of the last message, first."""
    content = request.messages[-1].content if request.messages else None
    if not isinstance(content, list) or all(part.type == "text" for part in content):
        return tokens
    marks = media_marks(msgspec.to_builtins(content))
    spaced = [marks[0], *(" " + mark for mark in marks[1:])]
    return [*spaced, *(" " + tokens[0].lstrip(), *tokens[1:])] if tokens else spaced


class LocalProvider(ModelProvider):
    name = "local"

    def __init__(
        self,
        models: list[str],
        ttft_s: float,
        token_delay_s: float,
        max_reply_tokens: int = DEFAULT_MAX_REPLY_TOKENS,
    ) -> None:
        self._models = models
        self.ttft_s = ttft_s
        self.token_delay_s = token_delay_s
        self.max_reply_tokens = max_reply_tokens

    async def list_models(self) -> list[str]:
        return list(self._models)

    def refuse(self, request: ChatCompletionRequest) -> None:
        """A bad tool or structured-output request is a 400 before the reply starts."""
        _plan(request)

    async def stream(
        self, request: ChatCompletionRequest, on_text: Callable[[str], None] | None = None
    ) -> AsyncIterator[UpstreamEvent]:
        reply = script(request, self.max_reply_tokens)
        fail = request.messages[-1].text().strip().startswith("/fail")
        await asyncio.sleep(self.ttft_s)
        for index, delta in enumerate(reply.deltas):
            if index:
                await asyncio.sleep(self.token_delay_s)
            yield delta
            if fail:
                raise UpstreamError("The local model failed on purpose (/fail).", retryable=True)
        prompt_tokens = await count_tokens_yielding(request.prompt_text())
        sent = len(reply.deltas)
        yield Finish(reply.finish_reason, Usage(prompt_tokens, sent, prompt_tokens + sent))
