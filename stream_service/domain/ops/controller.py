"""``/stream/healthz``, and ``/stream/metrics`` (Prometheus text) for this machine only.

``/stream/healthz`` is the load balancer's target check and says how the node is:
``ok`` (200); ``degraded`` (200) while the room bus is not connected: this node still
serves its streams, its rooms and every stream's resume (all in DynamoDB), only rooms
across nodes miss live frames until the bus is back (members fill gaps from the store),
so taking the node out of service would cut live streams for nothing (every node shares
the one bus: the ALB would drain them all); ``draining`` (503) after SIGTERM. The body
always carries the bus's health (``bus``: kind, state, outages, seconds down; a cluster's
shards), so the outage is visible to anyone who looks, and alarmed on through the
BusConnected metric.

Metrics are never served to the public path. In AWS, ``METRICS_PORT`` serves them on a
port of their own (see ``stream_service.__main__``) that only the VPC reaches: the ALB
forwards only the service port, CloudFront has no route to it, and the task's security
group admits it from inside the VPC only. ``/stream/metrics`` on the service port answers
only a peer on loopback that came through no proxy (tests, ``make bench``, ``make dev``);
anyone else gets the same 404 as an unknown path.
"""

from __future__ import annotations

import enum
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.errors import NotFound
from core.settings import is_loopback
from stream_service.domain.dependencies import Engine
from stream_service.domain.rooms.controller import Rooms
from stream_service.rooms.bus.base import BusHealth

# Any of these means a proxy (CloudFront adds X-Amz-Cf-Id, the ALB X-Forwarded-For) relayed
# the request: it may come from anywhere, whatever the peer address.
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-amz-cf-id", "via")


def is_local_request(request: Request[Any, Any, Any]) -> bool:
    """A request from this machine itself, not relayed by a proxy."""
    client = request.client
    if client is None or not is_loopback(client.host):
        return False
    return not any(name in request.headers for name in PROXY_HEADERS)


class Health(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # serving, but the room bus is down: rooms across nodes lag
    DRAINING = "draining"  # SIGTERM: going away, take no new work (503)


def node_health(draining: bool, bus: BusHealth) -> Health:
    if draining:
        return Health.DRAINING
    return Health.OK if bus.connected else Health.DEGRADED


@get("/stream/healthz")
async def healthz(engine: Engine, rooms: Rooms) -> Response[dict[str, Any]]:
    bus = rooms.bus.health()
    status = node_health(engine.draining, bus)
    body: dict[str, Any] = {"status": status.value, "node": engine.node}
    if status is not Health.DRAINING:
        body["active_streams"] = len(engine.live)
    body["bus"] = bus.as_dict()
    return Response(body, status_code=503 if status is Health.DRAINING else 200)


@get("/stream/metrics")
async def metrics(request: Request[Any, Any, Any], engine: Engine) -> Response[bytes]:
    if not is_local_request(request):
        raise NotFound(f"Not found: {request.url.path}")
    return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)
