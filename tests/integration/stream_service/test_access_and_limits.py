"""Per-user limits across the cluster, ownership, and clear errors for bad input."""

from __future__ import annotations

import httpx
import pytest

from core.auth.dev import DevTokens
from devstack.local_aws import free_port
from tests.integration.stream_service.conftest import StartNode, auth, create
from tests.support.servers import ProcessServer
from tests.support.sse import read_sse


def test_reject_policy_counts_streams_on_every_node(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    headers = auth(tokens, "limited-user")
    ids = [create(node, headers, tokens_out=200).json()["id"] for node in (a, b, a)]
    refused = create(b, headers, tokens_out=5)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "too_many_streams"
    # another user is not affected
    assert create(b, auth(tokens, "other-user"), tokens_out=2).status_code == 201
    # cancelling one frees a slot, on any node
    for node, stream_id in ((a, ids[0]), (b, ids[1]), (a, ids[2])):
        httpx.post(f"{node.url}/stream/v1/streams/{stream_id}/cancel", headers=headers)
    assert create(b, headers, tokens_out=2).status_code == 201


def test_replace_policy_cancels_the_oldest(
    cluster: tuple[ProcessServer, ProcessServer], start_node: StartNode, tokens: DevTokens
) -> None:
    a, _ = cluster
    replacing = start_node(
        NODE_ID="replacing", STREAM_LIMIT_POLICY="replace", MAX_STREAMS_PER_USER="2"
    )
    headers = auth(tokens, "replace-user")
    oldest = create(a, headers, tokens_out=300).json()
    create(a, headers, tokens_out=300)
    newest = create(replacing, headers, tokens_out=3)
    assert newest.status_code == 201
    ending = read_sse(a.url + oldest["events_url"], timeout=10)
    assert ending.last().event == "done"
    assert ending.last().json()["finish_reason"] == "cancelled"
    assert read_sse(replacing.url + newest.json()["events_url"]).last().event == "done"


def test_another_users_stream_is_not_found(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    created = create(a, auth(tokens, "owner"), tokens_out=3).json()
    mallory = auth(tokens, "mallory")
    for node in (a, b):
        base = f"{node.url}/stream/v1/streams/{created['id']}"
        assert httpx.get(base, headers=mallory).status_code == 404
        assert httpx.get(base + "/events", headers=mallory).status_code == 404
        assert httpx.post(base + "/cancel", headers=mallory).status_code == 404
    # a URL token is scoped to its stream
    other = create(a, auth(tokens, "mallory"), tokens_out=2).json()
    token = other["events_url"].split("token=")[1]
    response = httpx.get(f"{a.url}/stream/v1/streams/{created['id']}/events?token={token}")
    assert response.status_code == 401


@pytest.mark.parametrize("bad_id", ["abc", "-1", "1.5", "99999999999999999999", "\u00b2"])
def test_malformed_last_event_id(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens, bad_id: str
) -> None:
    a, _ = cluster
    created = create(a, auth(tokens), tokens_out=2).json()
    if bad_id.isascii():
        result = read_sse(a.url + created["events_url"], headers={"Last-Event-ID": bad_id})
        assert result.status == 400
    from urllib.parse import quote

    result = read_sse(a.url + created["events_url"] + "&last_event_id=" + quote(bad_id))
    assert result.status == 400
    assert "Last-Event-ID" in result.body


def test_unknown_stream_bad_json_and_beyond_the_end(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    headers = auth(tokens)
    for node in (a, b):
        response = httpx.get(f"{node.url}/stream/v1/streams/nope/events", headers=headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "stream_not_found"
    response = httpx.post(f"{a.url}/stream/v1/streams", content=b"{oops", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    response = httpx.post(
        f"{a.url}/stream/v1/streams",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
        headers=headers,
    )
    assert response.status_code == 404
    assert (
        httpx.post(f"{a.url}/stream/v1/streams", json={"model": "x", "messages": []}).status_code
        == 401
    )
    created = create(a, headers, tokens_out=2).json()
    whole = read_sse(a.url + created["events_url"])
    beyond = read_sse(
        a.url + created["events_url"], headers={"Last-Event-ID": str(whole.ids[-1] + 5)}
    )
    assert beyond.status == 400


def test_typing_status_first_and_keepalive_while_waiting(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, _ = cluster
    created = create(a, auth(tokens), tokens_out=30).json()
    result = read_sse(a.url + created["events_url"])
    assert result.events[0].event == "status"
    assert result.events[0].json()["state"] in ("queued", "thinking", "streaming")
    metrics = httpx.get(f"{a.url}/stream/metrics").text
    for name in (
        "rtai_stream_ttft_seconds_bucket",
        "rtai_stream_ttft_stage_seconds_bucket",
        "rtai_stream_active_streams",
        "rtai_stream_connections",
        "rtai_stream_resumes_total",
        "rtai_stream_store_writes_total",
        "rtai_stream_inter_token_seconds_bucket",
    ):
        assert name in metrics, name


def test_metrics_are_not_served_to_the_public_path(start_node: StartNode) -> None:
    """Through any proxy (CloudFront, the ALB) /stream/metrics is an unknown path; the
    metrics live on METRICS_PORT, which only the VPC reaches in AWS."""
    metrics_port = free_port()
    node = start_node(NODE_ID="metrics-port", METRICS_PORT=str(metrics_port))
    for proxied in ({"X-Forwarded-For": "203.0.113.9"}, {"X-Amz-Cf-Id": "abc"}, {"Via": "1.1 x"}):
        response = httpx.get(f"{node.url}/stream/metrics", headers=proxied)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert scraped.status_code == 200
    assert "rtai_stream_active_streams" in scraped.text
