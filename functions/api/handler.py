"""Lambda entry point: the Litestar app behind Mangum (lifespan off; built at import).

A cold start imports only what every request needs (Litestar, settings, token checks).
The model SDK is imported by the first request that calls the model (``LazyProvider``)
and the batch code (boto3, Powertools idempotency) by the first batch or files request.
With SnapStart, the snapshot is taken after :func:`_before_snapshot` has imported those
too, so restored instances have them all (but no secret: the model key is read at the
first model call). Logs: Lambda's JSON log format (it adds the
request id), no logging framework of our own.
"""

from __future__ import annotations

import random
from typing import Any, cast

from mangum import Mangum

from core.settings import forget_secrets, get_settings, require_safe_exposure
from functions.api.app import create_app

# Fail closed: a function URL or API route is public, so dev auth needs AUTH_DEV_ALLOW_PUBLIC.
require_safe_exposure(get_settings(), None)
app = create_app()
_asgi = Mangum(cast(Any, app), lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result: dict[str, Any] = _asgi(event, context)
    return result


def _before_snapshot() -> None:
    """SnapStart: import what first requests would otherwise import, before the snapshot.
    Modules only: the provider itself (and the model key it reads by ARN) is built after
    restore, so a key set after deploy is the one used."""
    import openai  # noqa: F401

    import functions.batch.service  # noqa: F401 - boto3, Powertools idempotency
    from core.providers import openai as _openai_provider  # noqa: F401


def _after_restore() -> None:
    """SnapStart: every restored instance starts from the same memory; give each its own
    pseudo-random sequence (the SDK's retry jitter), as a fresh interpreter would have, and
    read every secret anew (the URL-token key may have rotated since the snapshot)."""
    random.seed()
    forget_secrets()


try:  # only inside Lambda's Python runtime (SnapStart's runtime hooks)
    from snapshot_restore_py import (  # type: ignore[import-not-found]
        register_after_restore,
        register_before_snapshot,
    )
except ImportError:  # pragma: no cover - everywhere else
    pass
else:  # pragma: no cover
    register_before_snapshot(_before_snapshot)
    register_after_restore(_after_restore)
