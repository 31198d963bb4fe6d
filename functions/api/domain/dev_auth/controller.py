"""``POST /api/v1/dev/token``: mints an HS256 dev token. Registered only in dev auth mode."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Controller, Request, post

from core import json_input
from core.auth.dev import DevTokens
from core.errors import InvalidRequest

_SUB_RE = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")


class TokenRequest(msgspec.Struct):
    sub: str
    ttl_s: int | None = None


class DevTokenController(Controller):
    path = "/api/v1/dev/token"

    @post(status_code=200)
    async def mint(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await request.body()
        try:
            data = json_input.decode(body or b"{}", type=TokenRequest)
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f'Expected {{"sub": "<user id>"}}: {exc}') from exc
        if not _SUB_RE.match(data.sub):
            raise InvalidRequest("'sub' must be 1-128 characters of letters, digits or ._@+-")
        tokens: DevTokens = request.app.state.dev_tokens
        ttl = data.ttl_s or tokens.ttl_s
        if not 1 <= ttl <= tokens.ttl_s:
            raise InvalidRequest(f"'ttl_s' must be between 1 and {tokens.ttl_s}.")
        return {
            "access_token": tokens.mint(data.sub, ttl),
            "token_type": "bearer",
            "expires_in": ttl,
        }
