"""moto's server as its own process for benchmarks: ``python -m bench.moto_server PORT``.

One request at a time (no threads): DynamoDB's per-item atomicity holds without a lock,
and threads gain nothing here since moto is pure Python under the GIL (a lock over moto's
item operations from many threads convoys on the GIL and cuts its throughput).
"""

from __future__ import annotations

import logging
import os
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

if __name__ == "__main__":
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    run_simple("127.0.0.1", port, DomainDispatcherApplication(create_backend_app), threaded=False)
