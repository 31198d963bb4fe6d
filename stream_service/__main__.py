"""``python -m stream_service --host H --port P``: one node of the stream service.

SIGTERM drains the node before uvicorn stops: new streams are refused (503), connected
clients are told to reconnect (an SSE ``retry:`` hint, then the connection closes), and
running producers finish and flush, all within ``DRAIN_S``. ``WORKERS`` > 1 runs that many
such nodes behind the one port (:mod:`stream_service.workers`).
On ECS behind an ALB the drain starts earlier, before the ALB's deregistration delay runs
out (:mod:`stream_service.aws.task_stop`), so no client meets the load balancer's cut.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

import prometheus_client
import uvicorn
from pydantic import ValidationError

from core.settings import InsecureConfiguration, get_settings, require_safe_exposure
from stream_service.app import NodeGauges, create_app
from stream_service.aws.cloudwatch import ACTIVE_STREAMS, BUS_CONNECTED, CloudWatchReporter, Gauge
from stream_service.config import StreamSettings, get_stream_settings
from stream_service.engine.engine import StreamEngine
from stream_service.realtime.frames import ws_protocol
from stream_service.realtime.settings import get_realtime_settings
from stream_service.transports.chunk_writer import ChunkWriterProtocol
from stream_service.transports.ws.config import get_ws_settings, uvicorn_ws_options
from stream_service.workers import Supervisor, reuseport_socket, worker_node_id

log = logging.getLogger("rtai.stream")


Background = Callable[["DrainingServer"], Coroutine[Any, Any, None]]


class DrainingServer(uvicorn.Server):
    """uvicorn that drains the engine before it stops, and runs the node's background
    jobs (the ECS task-stop watch, the CloudWatch reporter) while it serves."""

    def __init__(
        self,
        config: uvicorn.Config,
        engine: StreamEngine,
        background: list[Background] | None = None,
    ) -> None:
        super().__init__(config)
        self.engine = engine
        self.background = background or []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        jobs = [asyncio.create_task(job(self)) for job in self.background]
        try:
            await super().serve(sockets)
        finally:
            for job in jobs:
                job.cancel()
            for job in jobs:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._drain is None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.begin_drain, "SIGTERM")
            return
        super().handle_exit(sig, frame)

    def begin_drain(self, why: str) -> None:
        """Start the drain (once; on the event loop): the node exits when it is done."""
        if self._drain is None:
            log.warning("%s: draining for up to %.0f s", why, self.engine.config.drain_s)
            self._drain = asyncio.create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self.engine.drain()
        finally:
            self.should_exit = True


def configure_logging() -> None:
    """The service's own lines go to stdout as they are (JSON for ``stream_done``)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    service = logging.getLogger("rtai")
    service.handlers[:] = [handler]
    service.setLevel(logging.INFO)
    service.propagate = False
    logging.getLogger().setLevel(logging.WARNING)
    # No per-request lines from the HTTP clients (httpx2 logs every upstream request at
    # INFO): set on the loggers themselves, since the app's logging config sets the root's.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "aiohttp", "botocore")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="stream_service", description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    configure_logging()
    try:  # fail closed: no start with a configuration that accepts forged tokens
        require_safe_exposure(get_settings(), args.host)
        workers = get_stream_settings().workers
    except (InsecureConfiguration, ValidationError) as exc:
        sys.exit(f"stream_service: refusing to start: {exc}")
    if workers == 1:
        serve(args)
        return
    base_id = get_stream_settings().node_id

    def serve_worker(index: int) -> None:
        # Each worker is a node of its own: its id and metrics port, settings read anew.
        os.environ["NODE_ID"] = worker_node_id(base_id, index)
        metrics_port = get_stream_settings().metrics_port
        if metrics_port:
            os.environ["METRICS_PORT"] = str(metrics_port + index)
        get_stream_settings.cache_clear()
        serve(args, reuse_port=True)

    sys.exit(Supervisor(workers, serve_worker).run())


def serve(args: argparse.Namespace, reuse_port: bool = False) -> None:
    """One node on ``args.host:args.port`` (``reuse_port``: one worker of several there)."""
    try:
        app = create_app()
    except (InsecureConfiguration, ValidationError) as exc:
        sys.exit(f"stream_service: refusing to start: {exc}")
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        # httptools, with a way to write a stream's chunks straight to the socket
        http=ChunkWriterProtocol,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=max(1, int(get_stream_settings().drain_s / 3)),
        # Above the ALB's idle timeout, so the ALB (not this side) closes idle connections
        # and never reuses one this side is closing (sporadic 502s). Checked at synth.
        timeout_keep_alive=math.ceil(get_stream_settings().http_keepalive_s),
        # WebSockets: protocol pings every KEEPALIVE_S, the frame size limit (1009 beyond
        # it), permessage-deflate off unless configured.
        **{
            **uvicorn_ws_options(get_ws_settings(), get_settings().keepalive_s),
            # the voice socket takes OpenAI's event sizes (REALTIME_MAX_EVENT_BYTES)
            "ws": ws_protocol(get_realtime_settings().max_event_bytes),
        },
    )
    serve_metrics_port(app.state.engine, args.host)
    tune_gc()
    # A worker binds once its app is built: the kernel hands connections to a bound socket
    # at once, and they would wait there for the app.
    sockets = [reuseport_socket(args.host, args.port)] if reuse_port else None
    background = aws_jobs(get_stream_settings(), app.state.node_gauges)
    DrainingServer(config, app.state.engine, background).run(sockets=sockets)


def aws_jobs(config: StreamSettings, gauges: NodeGauges) -> list[Background]:
    """On ECS: the task-stop watch (hand-over before the ALB's cut) and the CloudWatch
    reporter, each only when configured."""
    jobs: list[Background] = []
    metadata_uri = config.ecs_container_metadata_uri_v4
    if metadata_uri and config.deregistration_delay_s > 0:

        async def watch_task_stop(server: DrainingServer) -> None:
            # on ECS only: its HTTP client (httpx) is not imported by every start
            from stream_service.aws.task_stop import TaskStopWatch

            watch = TaskStopWatch(
                metadata_uri,
                deregistration_delay_s=config.deregistration_delay_s,
                lead_s=config.drain_s + config.handoff_margin_s,
                begin_drain=lambda: server.begin_drain("ECS stops this task (hand-over)"),
            )
            await watch.run()

        jobs.append(watch_task_stop)
    if config.emf_interval_s > 0:
        metrics = [Gauge(ACTIVE_STREAMS, gauges.active_streams)]
        if gauges.has_shared_bus:
            metrics.append(Gauge(BUS_CONNECTED, gauges.bus_connected))
        reporter = CloudWatchReporter(metrics, config.emf_interval_s)

        async def report(_: DrainingServer) -> None:
            await reporter.run()

        jobs.append(report)
    return jobs


def serve_metrics_port(engine: StreamEngine, host: str) -> None:
    """``METRICS_PORT``: Prometheus text at ``/metrics`` on a port of its own, for scrapers
    inside the VPC (the load balancer forwards only the service port). A daemon thread of
    prometheus_client's own server: a scrape never runs on the event loop."""
    port = get_stream_settings().metrics_port
    if port:
        prometheus_client.start_http_server(port, addr=host, registry=engine.metrics.registry)
        log.info("metrics on http://%s:%d/metrics", host, port)


def tune_gc() -> None:
    """Fewer, cheaper collections on the token path. Every token allocates a handful of
    short-lived objects; with the default threshold (700) the young generation is
    collected hundreds of times a second at thousands of streams, and each full collection
    walks every long-lived object. Objects that exist after start-up (modules, the app)
    are moved out of the collector's sight; reference cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


GC_YOUNG_THRESHOLD = 20_000


if __name__ == "__main__":
    main()
