"""An embedded AWS (moto's threaded server on 127.0.0.1) for DynamoDB, S3 and SQS."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.server import ThreadedMotoServer

_ITEM_OPERATIONS = ("put_item", "get_item", "query", "update_item", "delete_item")
_atomic = threading.RLock()


def make_dynamodb_atomic() -> None:
    """DynamoDB applies each item write atomically (a conditional update is read, checked
    and written as one step); moto's threaded server does not lock its in-memory tables, so
    two concurrent conditional updates of one item can interleave. One lock around moto's
    item operations restores DynamoDB's semantics for local runs and tests."""
    for name in _ITEM_OPERATIONS:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_rtai_atomic", False):
            continue

        def locked(*args: Any, __method: Any = method, **kwargs: Any) -> Any:
            with _atomic:
                return __method(*args, **kwargs)

        locked._rtai_atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, locked)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalAws:
    """A running moto server; :meth:`environ` gives the variables that point clients at it."""

    server: ThreadedMotoServer
    endpoint: str

    @classmethod
    def start(cls, port: int | None = None) -> LocalAws:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        make_dynamodb_atomic()
        port = port or free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return cls(server, f"http://127.0.0.1:{port}")

    def environ(self) -> dict[str, str]:
        return {
            "DYNAMODB_ENDPOINT_URL": self.endpoint,
            "S3_ENDPOINT_URL": self.endpoint,
            "SQS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_REGION", "us-east-1"),
        }

    def stop(self) -> None:
        self.server.stop()
