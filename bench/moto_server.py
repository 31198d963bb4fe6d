"""moto's server as its own process, with DynamoDB's per-item atomicity (see
:func:`devstack.local_aws.make_dynamodb_atomic`): ``python -m bench.moto_server PORT``."""

from __future__ import annotations

import sys

from moto.server import main as moto_main

from devstack.local_aws import make_dynamodb_atomic

if __name__ == "__main__":
    make_dynamodb_atomic()
    moto_main(["-H", "127.0.0.1", "-p", sys.argv[1]])
