"""The relay's upstream connect against real sockets: nothing listening is a clear error."""

from __future__ import annotations

import pytest

from devstack.local_aws import free_port
from stream_service.realtime.metrics import RealtimeMetrics
from stream_service.realtime.protocol import ProtocolError
from stream_service.realtime.relay import UpstreamRelay
from stream_service.realtime.session import SessionRegistry
from stream_service.realtime.settings import RealtimeSettings


async def test_an_unreachable_upstream_is_upstream_unavailable() -> None:
    settings = RealtimeSettings(upstream_connect_timeout_s=2)
    metrics = RealtimeMetrics()
    session = SessionRegistry(settings, metrics).create("alice", "gpt-realtime", "openai")
    relay = UpstreamRelay(
        settings=settings,
        metrics=metrics,
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key="sk-x",
    )
    with pytest.raises(ProtocolError) as caught:
        await relay.start(session)
    assert (caught.value.code, caught.value.type) == ("upstream_unavailable", "server_error")
    assert metrics.upstream_failures._value.get() == 1
    await relay.close()
