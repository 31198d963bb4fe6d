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
import re
from collections.abc import AsyncIterator

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
_TOKEN_RE = re.compile(r"\s*\S+")
_DEFAULT_TOKENS = 48


def count_tokens(text: str) -> int:
    """The local model's tokenizer: a token is a word with its leading whitespace."""
    return len(_TOKEN_RE.findall(text))


def script_reply(request: ChatCompletionRequest) -> tuple[list[str], str]:
    """The tokens the local model answers ``request`` with, and the finish reason."""
    prompt = request.messages[-1].text().strip() if request.messages else ""
    limit = request.output_token_limit
    if prompt.startswith("/echo "):
        tokens = _TOKEN_RE.findall(prompt[len("/echo ") :])
    else:
        wanted = _DEFAULT_TOKENS
        match = re.match(r"/tokens\s+(\d+)", prompt)
        if match:
            wanted = int(match.group(1))
        digest = hashlib.sha256(request.prompt_text().encode()).digest()
        tokens = []
        i = 0
        while len(tokens) < wanted:
            sentence = _CORPUS[digest[i % len(digest)] % len(_CORPUS)]
            tokens.extend(_TOKEN_RE.findall((" " if tokens else "") + sentence))
            i += 1
        tokens = tokens[:wanted]
    if limit is not None and len(tokens) > limit:
        return tokens[:limit], "length"
    return tokens, "stop"


class LocalProvider(ModelProvider):
    name = "local"

    def __init__(self, models: list[str], ttft_s: float, token_delay_s: float) -> None:
        self._models = models
        self.ttft_s = ttft_s
        self.token_delay_s = token_delay_s

    async def list_models(self) -> list[str]:
        return list(self._models)

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[UpstreamEvent]:
        tokens, reason = script_reply(request)
        fail = request.messages[-1].text().strip().startswith("/fail")
        await asyncio.sleep(self.ttft_s)
        for index, token in enumerate(tokens):
            if index:
                await asyncio.sleep(self.token_delay_s)
            yield TokenDelta(token)
            if fail:
                raise UpstreamError("The local model failed on purpose (/fail).", retryable=True)
        prompt_tokens = count_tokens(request.prompt_text())
        yield Finish(reason, Usage(prompt_tokens, len(tokens), prompt_tokens + len(tokens)))
