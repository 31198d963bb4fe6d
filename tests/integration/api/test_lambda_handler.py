"""The REST app invoked as a Lambda: API Gateway HTTP API (payload v2) events through Mangum."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from tests.support.lambda_events import http_api_event
from tests.support.servers import ROOT

_COLD_START_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import functions.api.handler as h
t1 = time.perf_counter()
sys.path.insert(0, "tests")
from tests.support.lambda_events import FakeContext
events = json.loads(sys.stdin.read())
results = []
for i, event in enumerate(events):
    s = time.perf_counter()
    results.append(h.handler(event, FakeContext()))
    if i == 0:
        t2 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1000, "first_invoke_ms": (t2 - t1) * 1000, "results": results}))
"""


@pytest.fixture(scope="module")
def invocations() -> dict[str, Any]:
    token = DevTokens(DEV_SECRET_DEFAULT, 600).mint("alice")
    chat = json.dumps(
        {"model": "local-model", "messages": [{"role": "user", "content": "/echo hello lambda"}]}
    ).encode()
    events = [
        http_api_event("GET", "/api/v1/models", token=token),
        http_api_event("POST", "/api/v1/chat/completions", chat, token=token, b64=True),
        http_api_event("POST", "/api/v1/chat/completions", chat, token=token),
        http_api_event("POST", "/api/v1/chat/completions", b"{broken", token=token, b64=True),
        http_api_event("GET", "/api/v1/models"),
        http_api_event("GET", "/api/healthz"),
    ]
    env = {
        **os.environ,
        "AUTH_MODE": "dev",
        "AUTH_DEV_ALLOW_PUBLIC": "1",  # a Lambda is reachable from outside: dev needs consent
        "LOCAL_TTFT_MS": "0",
        "LOCAL_TOKEN_DELAY_MS": "0",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    env.pop("DYNAMODB_ENDPOINT_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", _COLD_START_SCRIPT],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"\nLambda cold start: import {result['import_ms']:.0f} ms, first invocation {result['first_invoke_ms']:.0f} ms"
    )
    return result


def test_cold_start_is_measured(invocations: dict[str, Any]) -> None:
    assert invocations["import_ms"] > 0
    assert invocations["results"][0]["statusCode"] == 200
    assert "local-model" in {m["id"] for m in json.loads(invocations["results"][0]["body"])["data"]}


def test_base64_and_plain_bodies_give_the_same_completion(invocations: dict[str, Any]) -> None:
    b64, plain = invocations["results"][1], invocations["results"][2]
    assert b64["statusCode"] == plain["statusCode"] == 200
    for result in (b64, plain):
        body = json.loads(result["body"])
        assert body["choices"][0]["message"]["content"] == "hello lambda"


def test_errors_keep_openai_shape_through_mangum(invocations: dict[str, Any]) -> None:
    broken, anonymous, health = invocations["results"][3:6]
    assert broken["statusCode"] == 400
    assert json.loads(broken["body"])["error"]["code"] == "invalid_json"
    assert anonymous["statusCode"] == 401
    assert health["statusCode"] == 200
