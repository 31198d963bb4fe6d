"""``/api/v1/batches``: OpenAI's Batch API (create, retrieve, list, cancel).

``Idempotency-Key`` on create: the same key and body from the same user make one batch.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery

from core import json_input
from core.errors import InvalidRequest
from core.http.auth import AuthPrincipal
from core.settings import Settings
from functions.batch.schemas import CreateBatch

if TYPE_CHECKING:
    from functions.batch.service import BatchService


def _service(request: Request[Any, Any, Any]) -> BatchService:
    # Imported at first use: boto3 and Powertools idempotency are a large share of a cold
    # start that a chat or models request does not need.
    from functions.batch.service import service_for

    settings: Settings = request.app.state.settings
    return service_for(settings)


class BatchesController(Controller):
    path = "/api/v1/batches"

    @post(status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal
    ) -> dict[str, Any]:
        try:
            body = json_input.decode(await request.body(), type=CreateBatch)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(
                'Expected {"input_file_id", "endpoint", "completion_window"}: ' + str(exc),
                code="invalid_value",
            ) from exc
        key = request.headers.get("idempotency-key")
        context = request.scope.get("aws.context")  # set by Mangum on Lambda
        batch = await asyncio.to_thread(
            _service(request).create_batch, principal.sub, body, key, context
        )
        return batch.to_openai()

    @get()
    async def list_batches(
        self,
        request: Request[Any, Any, Any],
        principal: AuthPrincipal,
        after: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
    ) -> dict[str, Any]:
        return await asyncio.to_thread(_service(request).list_batches, principal.sub, after, limit)

    @get("/{batch_id:str}")
    async def retrieve(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal, batch_id: FromPath[str]
    ) -> dict[str, Any]:
        batch = await asyncio.to_thread(_service(request).get_batch, principal.sub, batch_id)
        return batch.to_openai()

    @post("/{batch_id:str}/cancel", status_code=200)
    async def cancel(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal, batch_id: FromPath[str]
    ) -> dict[str, Any]:
        batch = await asyncio.to_thread(_service(request).cancel_batch, principal.sub, batch_id)
        return batch.to_openai()
