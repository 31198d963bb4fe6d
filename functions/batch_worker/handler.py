"""Lambda entry point of the batch worker: ``functions.batch_worker.handler.handler``.

Wired to the batch queue with ``ReportBatchItemFailures`` and a dead-letter queue. Each SQS
record is one chunk of lines (or a finalize request); Powertools' ``BatchProcessor``
reports the records that raised, so only those are retried, and a poison record ends in
the DLQ after the queue's ``maxReceiveCount``. An EventBridge scheduled event (any event
without ``Records``) runs the expiry sweep instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.providers import ModelProvider, build_provider
from core.settings import Settings, get_settings
from functions.batch.service import BatchService
from functions.batch.store.base import BatchStore
from functions.batch.store.dynamodb import DynamoBatchStore
from functions.batch.worker import BatchWorker, WorkerStats

logger = Logger(service="rtai-batch-worker")
metrics = Metrics(namespace="rtai", service="batch-worker")

_METRICS = {
    "lines_succeeded": "BatchLinesSucceeded",
    "lines_failed": "BatchLinesFailed",
    "lines_skipped": "BatchLinesSkipped",
    "duplicates": "BatchDuplicateLinesSkipped",
    "upstream_retries": "BatchUpstreamRetries",
}


class WorkerRuntime:
    """What one worker process owns: an event loop, the provider, the worker.

    The Lambda handler and the local polling worker (``devstack/batch_worker.py``) both
    drive SQS-shaped events through :meth:`process`, so the same code runs in both.
    """

    def __init__(
        self,
        settings: Settings,
        store: BatchStore | None = None,
        provider: ModelProvider | None = None,
    ) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        # The worker retries the upstream itself (backoff + jitter): no SDK retries on top.
        self.provider = provider or build_provider(
            settings.model_copy(update={"openai_max_retries": 0})
        )
        self.store = store or DynamoBatchStore(settings)
        self.worker = BatchWorker(settings, self.store, self.provider)

    def record_handler(self, record: SQSRecord) -> None:
        self.loop.run_until_complete(self.worker.handle_body(record.body))

    def process(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """Run an SQS event; returns ``{"batchItemFailures": [...]}``."""
        if "Records" not in event:
            return {"swept": BatchService(self.settings, self.store).sweep()}
        processor = BatchProcessor(event_type=EventType.SQS)
        response: dict[str, Any] = dict(
            process_partial_response(
                event=event,
                record_handler=self.record_handler,
                processor=processor,
                context=context,
            )
        )
        return response

    def close(self) -> None:
        self.loop.run_until_complete(self.provider.aclose())
        self.loop.close()


_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None:
        _runtime = WorkerRuntime(get_settings())
    return _runtime


def _publish(before: dict[str, Any], after: WorkerStats) -> None:
    now = asdict(after)
    for field, name in _METRICS.items():
        delta = now[field] - before[field]
        if delta:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=delta)
    finalized = len(now["finalized"]) - len(before["finalized"])
    if finalized:
        metrics.add_metric(name="BatchesFinalized", unit=MetricUnit.Count, value=finalized)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rt = runtime()
    before = asdict(rt.worker.stats)
    try:
        return rt.process(event, context)
    finally:
        _publish(before, rt.worker.stats)
