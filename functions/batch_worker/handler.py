"""Lambda entry point of the batch worker: ``functions.batch_worker.handler.handler``.

Wired to the batch queue with ``ReportBatchItemFailures`` and a dead-letter queue. Each SQS
record is one chunk of lines (or a finalize request); Powertools' ``BatchProcessor``
reports the records that raised, so only those are retried, and a poison record ends in
the DLQ after the queue's ``maxReceiveCount``. An EventBridge scheduled event (any event
without ``Records``) runs the expiry sweep instead.

The invocation never outlives its timeout: every upstream call is bounded by
``OPENAI_TIMEOUT_S`` and starts only if it ends ``BATCH_HANDBACK_MARGIN_S`` before the
invocation does (:mod:`functions.batch.budget`). A record that runs out of time is handed
back: reported in ``batchItemFailures`` (its finished lines are saved and skipped next
time) and made visible again at once (``ChangeMessageVisibility`` to 0), so another
invocation continues it now instead of after the queue's visibility timeout.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from core.aws import clients
from core.providers import ModelProvider, build_provider
from core.settings import Settings, get_settings
from functions.batch.budget import Budget, OutOfTime
from functions.batch.service import BatchService
from functions.batch.store.base import BatchStore
from functions.batch.store.dynamodb import DynamoBatchStore
from functions.batch.worker import BatchWorker, WorkerStats

logger = Logger(service="rtai-batch-worker")
log = logging.getLogger("rtai.batch.worker")
metrics = Metrics(namespace="rtai", service="batch-worker")

_METRICS = {
    "lines_succeeded": "BatchLinesSucceeded",
    "lines_failed": "BatchLinesFailed",
    "lines_skipped": "BatchLinesSkipped",
    "duplicates": "BatchDuplicateLinesSkipped",
    "upstream_retries": "BatchUpstreamRetries",
    "handed_back": "BatchMessagesHandedBack",
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
        self._budget = self.worker.unbounded()
        self._handed_back: list[str] = []

    def record_handler(self, record: SQSRecord) -> None:
        try:
            self.loop.run_until_complete(self.worker.handle_body(record.body, self._budget))
        except OutOfTime:
            self._handed_back.append(record.receipt_handle)
            self.worker.stats.handed_back += 1
            raise

    def budget_of(self, context: Any) -> Budget:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is None:
            return self.worker.unbounded()
        return Budget.of_invocation(
            remaining(), self.settings.openai_timeout_s, self.settings.batch_handback_margin_s
        )

    def process(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        """Run an SQS event; returns ``{"batchItemFailures": [...]}``."""
        if "Records" not in event:
            return {"swept": BatchService(self.settings, self.store).sweep()}
        self._budget = self.budget_of(context)
        self._handed_back = []
        # Records handed back are not failures of the invocation (no error, no alarm): the
        # whole-batch failure is raised below only when a record really failed.
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        response: dict[str, Any] = dict(
            process_partial_response(
                event=event,
                record_handler=self.record_handler,
                processor=processor,
                context=context,
            )
        )
        self._release(self._handed_back)
        failed = response.get("batchItemFailures", [])
        if failed and len(failed) == len(event["Records"]) > len(self._handed_back):
            raise BatchProcessingError(
                f"All records failed processing. {len(processor.exceptions)} individual errors"
                " logged separately below.",
                processor.exceptions,
            )
        return response

    def _release(self, receipt_handles: list[str]) -> None:
        """Handed-back messages: visible again now (another invocation takes them up)."""
        if not receipt_handles or not self.settings.batch_queue_url:
            return
        sqs = clients.sqs(self.settings)
        for start in range(0, len(receipt_handles), 10):  # the API's batch limit
            entries = [
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(receipt_handles[start : start + 10])
            ]
            try:
                sqs.change_message_visibility_batch(
                    QueueUrl=self.settings.batch_queue_url,
                    Entries=entries,  # type: ignore[arg-type]
                )
            except Exception:  # they come back after the visibility timeout instead
                log.warning("could not release handed-back messages", exc_info=True)

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
