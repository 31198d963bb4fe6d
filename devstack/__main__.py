"""``python -m devstack``: embedded AWS, tables, and the whole stack on http://127.0.0.1:8000."""

from __future__ import annotations

import argparse
import os

import uvicorn

from core.auth.factory import dev_tokens
from core.aws import clients
from core.aws.tables import ensure_tables
from core.settings import Settings, get_settings, require_safe_exposure
from devstack.app import create_dev_app
from devstack.batch_worker import LocalBatchWorker, ensure_local_batch_resources
from devstack.local_aws import LocalAws
from stream_service.transports.chunk_writer import ChunkWriterProtocol
from stream_service.transports.ws.config import get_ws_settings, uvicorn_ws_options


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--aws-port", type=int, default=None, help="moto server port (default: free)"
    )
    args = parser.parse_args(argv)
    # Fail closed before anything starts: dev auth only on loopback unless allowed.
    require_safe_exposure(Settings(), args.host)

    aws = None
    if not os.environ.get("DYNAMODB_ENDPOINT_URL"):
        aws = LocalAws.start(args.aws_port)
        os.environ.update(aws.environ())
    settings = get_settings()
    ensure_tables(clients.dynamodb(settings), settings)
    batch_worker = None
    if settings.is_local_aws:  # the batch API's bucket and queue, and its polling worker
        settings = ensure_local_batch_resources(settings)
        batch_worker = LocalBatchWorker(settings).start()

    url = f"http://{args.host}:{args.port}"
    token = dev_tokens(settings).mint("dev-user") if settings.auth_mode == "dev" else None
    print(f"realtime-ai-stack dev server: {url}", flush=True)
    print(f"  provider={settings.provider} auth={settings.auth_mode}", flush=True)
    print(f"  embedded AWS (DynamoDB, S3, SQS): {settings.dynamodb_endpoint_url}", flush=True)
    if token:
        print(f"  dev token (sub=dev-user): {token}", flush=True)
        print(f"  try: curl -H 'Authorization: Bearer {token}' {url}/api/v1/models", flush=True)
    try:
        uvicorn.run(
            create_dev_app(settings),
            host=args.host,
            port=args.port,
            loop="uvloop",
            http=ChunkWriterProtocol,  # the stream service's own (stream_service.__main__)
            log_level="warning",
            access_log=False,
            **uvicorn_ws_options(get_ws_settings(), settings.keepalive_s),
        )
    finally:
        if batch_worker is not None:
            batch_worker.stop()
        if aws is not None:
            aws.stop()


if __name__ == "__main__":
    main()
