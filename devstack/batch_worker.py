"""``make dev``'s batch worker: polls the (moto) SQS queue in a thread, like Lambda's.

It receives up to 10 messages, hands them to the worker Lambda's own code
(:class:`functions.batch_worker.handler.WorkerRuntime`) as a real SQS event, deletes the
records that succeeded and leaves the reported failures to reappear after the visibility
timeout, so redrive to the dead-letter queue works as in AWS. Every few seconds it also
runs the expiry sweep.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from core.aws import clients
from core.aws.errors import error_code
from core.settings import Settings
from functions.batch_worker.handler import WorkerRuntime

log = logging.getLogger("rtai.devstack.batch")

QUEUE_NAME = "rtai-batch"
DLQ_NAME = "rtai-batch-dlq"
MAX_RECEIVE_COUNT = 3


def ensure_local_batch_resources(
    settings: Settings,
    queue_name: str = QUEUE_NAME,
    visibility_timeout_s: int = 60,
    max_receive_count: int = MAX_RECEIVE_COUNT,
) -> Settings:
    """Create the files bucket, the queue and its DLQ; return settings pointing at them."""
    s3 = clients.s3(settings)
    try:
        s3.create_bucket(Bucket=settings.files_bucket)
    except ClientError as exc:
        if error_code(exc) not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise
    sqs = clients.sqs(settings)
    dlq_url = sqs.create_queue(QueueName=f"{queue_name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "{max_receive_count}"}}'
    url = sqs.create_queue(
        QueueName=queue_name,
        Attributes={"VisibilityTimeout": str(visibility_timeout_s), "RedrivePolicy": redrive},
    )["QueueUrl"]
    if settings.batch_queue_url:
        return settings
    return settings.model_copy(update={"batch_queue_url": url})


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """Messages from ReceiveMessage in the shape Lambda's SQS event source delivers."""
    records = []
    for m in messages:
        body = m["Body"]
        records.append(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": body,
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


class LocalBatchWorker:
    """The in-process stand-in for the worker Lambda and its SQS event source mapping."""

    def __init__(
        self,
        settings: Settings,
        *,
        wait_s: int = 1,
        sweep_every_s: float = 5.0,
        before_delete: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        if not settings.batch_queue_url:
            raise ValueError("LocalBatchWorker needs BATCH_QUEUE_URL")
        self.settings = settings
        self.queue_url = settings.batch_queue_url
        self.wait_s = wait_s
        self.sweep_every_s = sweep_every_s
        # Test hook: runs after processing, before deleting (raise to "crash" there).
        self.before_delete = before_delete
        self.sqs = clients.sqs(settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._runtime: WorkerRuntime | None = None
        self._arn: str | None = None
        self.processed = 0

    def start(self) -> LocalBatchWorker:
        self._thread = threading.Thread(target=self._run, name="batch-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> LocalBatchWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def runtime(self) -> WorkerRuntime:
        if self._runtime is None:
            self._runtime = WorkerRuntime(self.settings)
        return self._runtime

    def _run(self) -> None:
        last_sweep = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    self.poll_once()
                    if time.monotonic() - last_sweep >= self.sweep_every_s:
                        last_sweep = time.monotonic()
                        self.runtime.process({"source": "local.sweep"})
                except Exception:
                    log.exception("local batch worker iteration failed")
                    self._stop.wait(1.0)
        finally:
            if self._runtime is not None:
                self._runtime.close()

    def poll_once(self) -> int:
        """Receive, process and delete one batch of messages; returns how many arrived."""
        reply = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.wait_s,
            AttributeNames=["All"],
        )
        messages = [dict(m) for m in reply.get("Messages", [])]
        if not messages:
            return 0
        if self._arn is None:
            self._arn = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
        event = sqs_event(messages, self._arn, self.settings.aws_region)
        try:
            response = self.runtime.process(event)
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        except Exception:  # Powertools raises when every record failed
            log.exception("every record of a local batch failed")
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        if self.before_delete is not None:
            self.before_delete(done)
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": str(m["ReceiptHandle"])}
                    for i, m in enumerate(done)
                ],
            )
        self.processed += len(done)
        return len(messages)
