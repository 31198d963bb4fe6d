"""Through a real nginx with default buffering, tokens arrive one by one, not in a burst."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.auth.dev import DevTokens
from tests.integration.stream_service.conftest import auth, create
from tests.support.nginx import Nginx
from tests.support.servers import ProcessServer
from tests.support.sse import SseResult, read_sse

TOKENS = 24  # 50 ms apart upstream: about 1.2 s of streaming


@pytest.fixture(scope="module")
def nginx(cluster: tuple[ProcessServer, ProcessServer]) -> Iterator[Nginx]:
    with Nginx(cluster[0].port) as proxy:
        yield proxy


def _arrival_spread(result: SseResult) -> tuple[float, int]:
    times = [e.at for e in result.events if e.event == "delta"]
    distinct = len({round(t, 3) for t in times})
    return times[-1] - times[0], distinct


def test_tokens_arrive_one_by_one_through_nginx(
    nginx: Nginx, tokens: DevTokens, cluster: tuple[ProcessServer, ProcessServer]
) -> None:
    created = create(cluster[0], auth(tokens), tokens_out=TOKENS).json()
    result = read_sse(nginx.url + created["events_url"])
    assert result.last().event == "done"
    spread, distinct = _arrival_spread(result)
    print(
        f"\nthrough nginx: {TOKENS} deltas spread over {spread * 1000:.0f} ms in {distinct} reads"
    )
    assert spread > 0.8  # the upstream emits over ~1.15 s
    assert distinct >= TOKENS * 0.8


def test_the_control_proxy_that_ignores_the_header_does_buffer(
    nginx: Nginx, tokens: DevTokens, cluster: tuple[ProcessServer, ProcessServer]
) -> None:
    """Proves the test above can fail: without X-Accel-Buffering the same stream bursts."""
    created = create(cluster[0], auth(tokens), tokens_out=TOKENS).json()
    result = read_sse(nginx.url + "/buffered" + created["events_url"])
    assert result.last().event == "done"
    spread, distinct = _arrival_spread(result)
    print(
        f"\nbuffering proxy: {TOKENS} deltas spread over {spread * 1000:.0f} ms in {distinct} reads"
    )
    assert spread < 0.2
