"""``GET /api/v1/models`` and ``GET /api/v1/models/{id}``."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.params import FromPath

from core.errors import NotFound
from core.http.auth import AuthPrincipal
from core.ids import MODEL_ID, shown
from core.providers import ModelProvider

_CREATED = 1_700_000_000


def _model(model_id: str, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": owner}


class ModelsController(Controller):
    path = "/api/v1/models"

    @get()
    async def list_models(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal
    ) -> dict[str, Any]:
        provider: ModelProvider = request.app.state.provider
        models = await provider.list_models()
        return {"object": "list", "data": [_model(m, provider.name) for m in models]}

    @get("/{model_id:str}")
    async def retrieve(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal, model_id: FromPath[str]
    ) -> dict[str, Any]:
        provider: ModelProvider = request.app.state.provider
        if not MODEL_ID.is_valid(model_id) or not await provider.has_model(model_id):
            raise NotFound(f"The model '{shown(model_id)}' does not exist.", code="model_not_found")
        return _model(model_id, provider.name)
