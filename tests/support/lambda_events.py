"""What AWS hands a Lambda: API Gateway HTTP API (payload v2) events and a context."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any


def http_api_event(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    b64: bool = False,
) -> dict[str, Any]:
    all_headers = {
        "content-type": "application/json",
        "host": "abc.execute-api.us-east-1.amazonaws.com",
    }
    if token:
        all_headers["authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc",
            "domainName": "abc.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "pytest",
            },
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "24/Nov/2026:00:00:00 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": b64,
    }
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if b64 else body.decode()
    return event


@dataclass
class FakeContext:
    """The attributes Powertools and Mangum read from a Lambda context."""

    function_name: str = "rtai-api"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:rtai-api"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = "req-1"
    log_group_name: str = "/aws/lambda/rtai-api"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000  # the batch worker's default timeout (a fresh invocation)
