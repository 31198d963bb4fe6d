"""``make dev`` (``python -m devstack``): a batch completes with the local model and the
in-process polling worker, against the dev stack's own embedded AWS."""

from __future__ import annotations

import json

import httpx
import openai

from tests.integration.batch.conftest import TERMINAL, chat_line, jsonl, wait_for
from tests.support.servers import ProcessServer


def test_batch_completes_on_make_dev() -> None:
    env = {"LOCAL_TTFT_MS": "5", "LOCAL_TOKEN_DELAY_MS": "1", "DYNAMODB_ENDPOINT_URL": ""}
    with ProcessServer("devstack", env, health="/api/healthz") as dev:
        token = httpx.post(f"{dev.url}/api/v1/dev/token", json={"sub": "laptop"}).json()
        client = openai.OpenAI(base_url=f"{dev.url}/api/v1", api_key=token["access_token"])
        lines = [chat_line(f"d{i}", f"/echo hello {i}") for i in range(30)]
        uploaded = client.files.create(file=("dev.jsonl", jsonl(lines)), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = wait_for(client, batch.id, lambda b: b.status in TERMINAL, timeout=30)
        assert done.status == "completed" and done.request_counts.completed == 30
        rows = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
        answers = {
            r["custom_id"]: r["response"]["body"]["choices"][0]["message"]["content"] for r in rows
        }
        assert answers == {f"d{i}": f"hello {i}" for i in range(30)}
