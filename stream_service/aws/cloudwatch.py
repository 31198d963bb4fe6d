"""The node's own metrics in CloudWatch: one embedded-metric-format (EMF) line on stdout
every ``EMF_INTERVAL_S``, written by Powertools' metrics (its ``EphemeralMetrics``: no
Lambda needed, nothing shared between instances).

The task's log driver (``awslogs``) ships stdout to CloudWatch Logs, which extracts the
metrics from EMF lines by itself: no agent, no ``PutMetricData`` call, no permission
beyond writing logs. Namespace and the ``service`` dimension are Powertools' own settings
(``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_SERVICE_NAME``), set by the infra.

* ``ActiveStreams``: producers running on this node (the autoscaling target tracks its
  average over tasks);
* ``BusConnected``: 1 while the room bus is connected, 0 during an outage (only on a
  shared bus, i.e. with ``BUS_URL``; an alarm fires on a 0).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

log = logging.getLogger("rtai.stream.cloudwatch")

ACTIVE_STREAMS = "ActiveStreams"
BUS_CONNECTED = "BusConnected"


@dataclass(frozen=True, slots=True)
class Gauge:
    name: str
    read: Callable[[], float]


class CloudWatchReporter:
    def __init__(
        self,
        gauges: list[Gauge],
        interval_s: float,
        *,
        namespace: str | None = None,
        service: str | None = None,
    ) -> None:
        self.gauges = gauges
        self.interval_s = interval_s
        self.namespace = namespace
        self.service = service

    def flush(self) -> None:
        """One EMF line with every gauge's current value."""
        metrics = EphemeralMetrics(namespace=self.namespace, service=self.service)
        for gauge in self.gauges:
            metrics.add_metric(name=gauge.name, unit=MetricUnit.Count, value=gauge.read())
        metrics.flush_metrics()

    async def run(self) -> None:
        """Flush now and every ``interval_s`` until cancelled; a failure is logged, never
        raised (metrics must not take the node down)."""
        while True:
            try:
                self.flush()
            except Exception:
                log.warning("could not write CloudWatch metrics", exc_info=True)
            await asyncio.sleep(self.interval_s)
