"""``/stream/healthz`` and ``/stream/metrics`` (Prometheus text)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_service.engine.engine import StreamEngine


@get("/stream/healthz")
async def healthz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    engine: StreamEngine = request.app.state.engine
    if engine.draining:
        return Response({"status": "draining", "node": engine.node}, status_code=503)
    return Response({"status": "ok", "node": engine.node, "active_streams": len(engine.live)})


@get("/stream/metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    engine: StreamEngine = request.app.state.engine
    return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)
