"""The REST Lambda's cold start imports only what every request needs.

The model SDK comes with the first request that calls the model, the batch code (boto3,
Powertools idempotency) with the first files or batches request. Timings are in
``python -m bench.api_cold_start`` (speed belongs in benchmarks, not tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.servers import ROOT

_SCRIPT = """
import json, sys
import functions.api.handler as h
from tests.support.lambda_events import FakeContext, http_api_event
from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT

HEAVY = ("openai", "httpx2", "functions.batch.service", "boto3",
         "aws_lambda_powertools.utilities.idempotency", "litestar.plugins.pydantic",
         "pydantic.v1", "jsonschema")
loaded = lambda: [m for m in HEAVY if m in sys.modules]
seen = {"import": loaded()}
token = DevTokens(DEV_SECRET_DEFAULT, 60).mint("alice")
health = h.handler(http_api_event("GET", "/api/healthz"), FakeContext())
seen["healthz"] = loaded()
chat = json.dumps({"model": "local-model", "messages": [{"role": "user", "content": "/echo hi"}]})
done = h.handler(http_api_event("POST", "/api/v1/chat/completions", chat.encode(), token=token),
                 FakeContext())
seen["chat"] = loaded()
seen["statuses"] = [health["statusCode"], done["statusCode"]]
print(json.dumps(seen))
"""


def _run(**env: str) -> dict[str, list[object]]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "OPENAI_"))},
            "AUTH_MODE": "dev",
            "AUTH_DEV_ALLOW_PUBLIC": "1",
            "LOCAL_TTFT_MS": "0",
            "LOCAL_TOKEN_DELAY_MS": "0",
            **env,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, list[object]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_import_loads_neither_the_sdk_nor_the_batch_code() -> None:
    seen = _run(LLM_PROVIDER="local")
    assert seen["import"] == []
    assert seen["healthz"] == []
    assert seen["statuses"] == [200, 200]
    assert "functions.batch.service" not in seen["chat"]


def test_with_the_openai_provider_the_sdk_comes_with_the_first_model_call() -> None:
    seen = _run(LLM_PROVIDER="openai", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert seen["import"] == []
    assert seen["healthz"] == []
    assert "openai" in seen["chat"]  # the upstream is down: the call fails, but was made
    assert seen["statuses"][0] == 200
    assert seen["statuses"][1] in (502, 503, 504)


def test_snapstart_hook_loads_everything_before_the_snapshot() -> None:
    """With SnapStart the snapshot is taken after the before-snapshot hook: restored
    instances have the SDK and the batch code already."""
    script = (
        "import sys, functions.api.handler as h; h._before_snapshot();"
        " print(all(m in sys.modules for m in ('openai', 'functions.batch.service')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "OPENAI_"))},
            "AUTH_MODE": "dev",
            "AUTH_DEV_ALLOW_PUBLIC": "1",
            "LLM_PROVIDER": "openai",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "True"
