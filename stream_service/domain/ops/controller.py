"""``/stream/healthz``, and ``/stream/metrics`` (Prometheus text) for this machine only.

Metrics are never served to the public path. In AWS, ``METRICS_PORT`` serves them on a
port of their own (see ``stream_service.__main__``) that only the VPC reaches: the ALB
forwards only the service port, CloudFront has no route to it, and the task's security
group admits it from inside the VPC only. ``/stream/metrics`` on the service port answers
only a peer on loopback that came through no proxy (tests, ``make bench``, ``make dev``);
anyone else gets the same 404 as an unknown path.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.errors import NotFound
from core.settings import is_loopback
from stream_service.domain.dependencies import Engine

# Any of these means a proxy (CloudFront adds X-Amz-Cf-Id, the ALB X-Forwarded-For) relayed
# the request: it may come from anywhere, whatever the peer address.
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-amz-cf-id", "via")


def is_local_request(request: Request[Any, Any, Any]) -> bool:
    """A request from this machine itself, not relayed by a proxy."""
    client = request.client
    if client is None or not is_loopback(client.host):
        return False
    return not any(name in request.headers for name in PROXY_HEADERS)


@get("/stream/healthz")
async def healthz(engine: Engine) -> Response[dict[str, Any]]:
    if engine.draining:
        return Response({"status": "draining", "node": engine.node}, status_code=503)
    return Response({"status": "ok", "node": engine.node, "active_streams": len(engine.live)})


@get("/stream/metrics")
async def metrics(request: Request[Any, Any, Any], engine: Engine) -> Response[bytes]:
    if not is_local_request(request):
        raise NotFound(f"Not found: {request.url.path}")
    return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)
