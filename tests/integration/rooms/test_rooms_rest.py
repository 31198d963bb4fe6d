"""The rooms REST endpoints on real nodes (``python -m stream_service``) sharing one moto
server and one redis-server: create on one node, add members on the other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from botocore.exceptions import EndpointConnectionError

from core.auth.dev import DevTokens
from core.aws import clients
from core.aws.tables import ensure_tables
from core.settings import DEV_SECRET_DEFAULT, Settings
from tests.support.redis import RedisServer
from tests.support.servers import ProcessServer, wait_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes(aws_env: dict[str, str], redis_server: RedisServer) -> Iterator[list[ProcessServer]]:
    env = {
        **aws_env,
        "STREAMS_TABLE": f"rooms-rest-{uuid.uuid4().hex[:8]}",
        "LLM_PROVIDER": "local",
        "BUS_URL": redis_server.url,
        "ROOM_MAX_MEMBERS": "3",
    }
    # the table exists before the nodes start (and moto answers: under load its thread
    # may still be binding when the first node asks)
    settings = Settings(
        dynamodb_endpoint_url=env["DYNAMODB_ENDPOINT_URL"], streams_table=env["STREAMS_TABLE"]
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            ensure_tables(clients.dynamodb(settings), settings)
            break
        except EndpointConnectionError:
            assert time.monotonic() < deadline, "moto server did not answer"
            time.sleep(0.2)
    started = [
        ProcessServer("stream_service", {**env, "NODE_ID": name}, health="/stream/healthz")
        for name in ("rest-a", "rest-b")
    ]
    for node in started:
        try:
            node.start()
        except TimeoutError:  # a loaded machine (2 shared cores): give it longer
            assert node.proc is not None and node.proc.poll() is None, node.log_path.read_text()
            wait_http(node.url + node.health, timeout=60)
    yield started
    for node in started:
        node.stop()


def auth(user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {DevTokens(DEV_SECRET_DEFAULT, 3600).mint(user)}"}


def test_create_a_room_and_add_members_across_nodes(nodes: list[ProcessServer]) -> None:
    a, b = nodes
    r = httpx.post(f"{a.url}/stream/v1/rooms", headers=auth("alice"), timeout=10)
    assert r.status_code == 201, r.text
    room_id = r.json()["id"]
    assert len(room_id) >= 20
    assert r.json()["members"] == ["alice"]

    r = httpx.post(f"{b.url}/stream/v1/rooms/{room_id}/members", json={"user": "bob"},
                   headers=auth("alice"), timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"id": room_id, "members": ["alice", "bob"]}
    r = httpx.post(f"{a.url}/stream/v1/rooms/{room_id}/members", json={"user": "carol"},
                   headers=auth("bob"), timeout=10)  # fmt: skip
    assert r.json()["members"] == ["alice", "bob", "carol"]

    r = httpx.post(f"{a.url}/stream/v1/rooms/{room_id}/members", json={"user": "dave"},
                   headers=auth("bob"), timeout=10)  # fmt: skip
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "room_full"


def test_non_members_and_unknown_rooms_get_the_same_404(nodes: list[ProcessServer]) -> None:
    a, _ = nodes
    room_id = httpx.post(f"{a.url}/stream/v1/rooms", headers=auth("alice"), timeout=10).json()["id"]
    for rid in (room_id, "rm_" + "x" * 22):
        r = httpx.post(f"{a.url}/stream/v1/rooms/{rid}/members", json={"user": "mallory"},
                       headers=auth("mallory"), timeout=10)  # fmt: skip
        assert r.status_code == 404
        err = r.json()["error"]
        assert err["code"] == "room_not_found" and err["type"] == "invalid_request_error"


def test_bad_requests_get_openai_shaped_errors(nodes: list[ProcessServer]) -> None:
    a, _ = nodes
    assert httpx.post(f"{a.url}/stream/v1/rooms", timeout=10).status_code == 401
    room_id = httpx.post(f"{a.url}/stream/v1/rooms", headers=auth("alice"), timeout=10).json()["id"]
    url = f"{a.url}/stream/v1/rooms/{room_id}/members"
    for body in (b"not json", b"{}", b'{"user": 5}', b'{"user": ""}', b'{"user": "x", "z": 1}',
                 ('{"user": "%s"}' % ("u" * 300)).encode()):  # fmt: skip
        r = httpx.post(url, content=body, headers=auth("alice"), timeout=10)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["type"] == "invalid_request_error"
