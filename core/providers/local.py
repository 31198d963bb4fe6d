"""A built-in scripted model: deterministic text, realistic pacing, no API key.

The reply is a pure function of the prompt and the token limit (see :func:`script_reply`),
so tests can assert the exact text. Pacing mimics a hosted model: a time to first token,
then one token every ``token_delay`` seconds.

Prompts that start with a directive steer the script, for demos and tests:
``/echo TEXT`` replies TEXT; ``/tokens N`` replies with exactly N tokens;
``/fail`` fails with a retryable upstream error after the first token.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
from collections.abc import AsyncIterator, Iterator

from core.errors import UpstreamError
from core.providers.base import Finish, ModelProvider, TokenDelta, UpstreamEvent
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


def script_reply(
    request: ChatCompletionRequest, max_reply_tokens: int = DEFAULT_MAX_REPLY_TOKENS
) -> tuple[list[str], str]:
    """The tokens the local model answers ``request`` with, and the finish reason.

    At most ``min(max_tokens, max_reply_tokens)`` tokens are ever built ("length" when the
    script wanted more), whatever the prompt asks for.
    """
    prompt = request.messages[-1].text().strip() if request.messages else ""
    limit = request.output_token_limit
    cap = max_reply_tokens if limit is None else min(limit, max_reply_tokens)
    if prompt.startswith("/echo "):
        tokens = list(itertools.islice(iter_tokens(prompt[len("/echo ") :]), cap + 1))
    else:
        wanted = _wanted_tokens(prompt, cap)
        digest = hashlib.sha256(request.prompt_text().encode()).digest()
        tokens = []
        i = 0
        while len(tokens) < wanted:
            pick = digest[i % len(digest)] % len(_CORPUS)
            tokens.extend(_SENTENCE_TOKENS[pick] if tokens else _FIRST_SENTENCE_TOKENS[pick])
            i += 1
        tokens = tokens[:wanted]
    if len(tokens) > cap:
        return tokens[:cap], "length"
    return tokens, "stop"


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

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[UpstreamEvent]:
        tokens, reason = script_reply(request, self.max_reply_tokens)
        fail = request.messages[-1].text().strip().startswith("/fail")
        await asyncio.sleep(self.ttft_s)
        for index, token in enumerate(tokens):
            if index:
                await asyncio.sleep(self.token_delay_s)
            yield TokenDelta(token)
            if fail:
                raise UpstreamError("The local model failed on purpose (/fail).", retryable=True)
        prompt_tokens = await count_tokens_yielding(request.prompt_text())
        yield Finish(reason, Usage(prompt_tokens, len(tokens), prompt_tokens + len(tokens)))
