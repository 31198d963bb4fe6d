"""``/api/v1/files``: OpenAI's Files API for purpose ``batch`` (upload, metadata, content).

``POST /api/v1/files/uploads`` (an extension) hands out a presigned S3 upload for files
above the direct-upload limit (API Gateway + Lambda take at most 6 MB per request).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect

from core import json_input
from core.errors import InvalidRequest, PayloadTooLarge
from core.http.auth import AuthPrincipal
from core.settings import Settings
from functions.batch.schemas import CreateUpload

if TYPE_CHECKING:
    from functions.batch.service import BatchService

# Litestar's own cap for this route; the configured MAX_UPLOAD_BYTES is checked below.
_ROUTE_BODY_CAP = 64 * 1024 * 1024
_MULTIPART_OVERHEAD = 64 * 1024


def _service(request: Request[Any, Any, Any]) -> BatchService:
    # Imported at first use: boto3 and Powertools idempotency are a large share of a cold
    # start that a chat or models request does not need.
    from functions.batch.service import service_for

    settings: Settings = request.app.state.settings
    return service_for(settings)


class FilesController(Controller):
    path = "/api/v1/files"

    @post(status_code=200, request_max_body_size=_ROUTE_BODY_CAP)
    async def upload(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal
    ) -> dict[str, Any]:
        service = _service(request)
        limit = service.settings.max_upload_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit + _MULTIPART_OVERHEAD:
            raise PayloadTooLarge(
                f"The upload is {length} bytes; direct uploads are limited to {limit} bytes. "
                "Use POST /api/v1/files/uploads for a presigned S3 upload.",
                param="file",
                code="file_too_large",
            )
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InvalidRequest("Expected multipart/form-data with 'file' and 'purpose'.")
        form = await request.form()
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Missing the 'file' part.", param="file")
        if not isinstance(purpose, str):
            raise InvalidRequest("Missing the 'purpose' field.", param="purpose")
        data = await upload.read()
        record = await asyncio.to_thread(
            service.upload_file, principal.sub, upload.filename, purpose, data
        )
        return record.to_openai()

    @post("/uploads", status_code=200)
    async def create_upload(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal
    ) -> dict[str, Any]:
        try:
            body = json_input.decode(await request.body(), type=CreateUpload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidRequest(
                f'Expected {{"filename", "bytes", "purpose": "batch"}}: {exc}'
            ) from exc
        return await asyncio.to_thread(_service(request).create_upload, principal.sub, body)

    @get()
    async def list_files(
        self,
        request: Request[Any, Any, Any],
        principal: AuthPrincipal,
        after: FromQuery[str | None] = None,
        limit: FromQuery[int | None] = None,
        purpose: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        return await asyncio.to_thread(
            _service(request).list_files, principal.sub, after, limit, purpose
        )

    @get("/{file_id:str}")
    async def retrieve(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal, file_id: FromPath[str]
    ) -> dict[str, Any]:
        record = await asyncio.to_thread(_service(request).get_file, principal.sub, file_id)
        return record.to_openai()

    @delete("/{file_id:str}", status_code=200)
    async def remove(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal, file_id: FromPath[str]
    ) -> dict[str, Any]:
        return await asyncio.to_thread(_service(request).delete_file, principal.sub, file_id)

    @get("/{file_id:str}/content")
    async def content(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal, file_id: FromPath[str]
    ) -> Response[bytes] | Redirect:
        found = await asyncio.to_thread(_service(request).file_content, principal.sub, file_id)
        if found.redirect is not None:
            return Redirect(path=found.redirect, status_code=302)
        return Response(
            content=found.data or b"",
            media_type="application/jsonl",
            headers={"Content-Disposition": f'attachment; filename="{found.filename}"'},
        )
