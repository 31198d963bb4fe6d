"""Lambda entry point: the Litestar app behind Mangum (lifespan off; built at import)."""

from __future__ import annotations

from typing import Any, cast

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from core.settings import get_settings, require_safe_exposure
from functions.api.app import create_app

logger = Logger(service="rtai-api")
# Fail closed: a function URL or API route is public, so dev auth needs AUTH_DEV_ALLOW_PUBLIC.
require_safe_exposure(get_settings(), None)
app = create_app()
_asgi = Mangum(cast(Any, app), lifespan="off")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result: dict[str, Any] = _asgi(event, cast(Any, context))
    return result
