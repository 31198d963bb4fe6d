"""/stream/metrics answers only this machine, never a proxied (public) request."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Request

from stream_service.domain.ops.controller import is_local_request


def _request(client: tuple[str, int] | None, headers: dict[str, str]) -> Request[Any, Any, Any]:
    scope: Any = {
        "type": "http",
        "method": "GET",
        "path": "/stream/metrics",
        "query_string": b"",
        "client": client,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return Request(scope)


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1"])
def test_a_loopback_peer_is_local(peer: str) -> None:
    assert is_local_request(_request((peer, 5000), {}))


@pytest.mark.parametrize("peer", ["10.0.1.7", "172.17.0.1", "203.0.113.5"])
def test_other_peers_are_not(peer: str) -> None:
    assert not is_local_request(_request((peer, 5000), {}))
    assert not is_local_request(_request(None, {}))


@pytest.mark.parametrize(
    "header", ["X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Amz-Cf-Id", "Via"]
)
def test_a_proxied_request_is_not_local_even_from_loopback(header: str) -> None:
    assert not is_local_request(_request(("127.0.0.1", 5000), {header: "x"}))
