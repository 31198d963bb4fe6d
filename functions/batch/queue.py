"""Work messages on SQS: one :class:`ChunkMessage` per run of lines, or a finalize request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from core.aws import clients
from core.errors import ServiceUnavailable
from core.settings import Settings
from functions.batch.schemas import QueueMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_decoder = msgspec.json.Decoder(QueueMessage)


def decode_message(body: str | bytes) -> QueueMessage:
    """Decode a message body (raises ``msgspec`` errors for a poison message)."""
    message: QueueMessage = _decoder.decode(body)
    return message


class BatchQueue:
    def __init__(self, settings: Settings, sqs: SQSClient | None = None) -> None:
        self.url = settings.batch_queue_url
        self.sqs = sqs or clients.sqs(settings)

    def send(self, messages: Sequence[QueueMessage]) -> None:
        """Send in groups of 10 (SendMessageBatch), retrying entries SQS reports as failed."""
        if not self.url:
            raise ServiceUnavailable("The batch queue is not configured (BATCH_QUEUE_URL).")
        for i in range(0, len(messages), 10):
            entries: list[Any] = [
                {"Id": str(n), "MessageBody": msgspec.json.encode(m).decode()}
                for n, m in enumerate(messages[i : i + 10])
            ]
            for _ in range(5):
                reply = self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
                failed = {f["Id"] for f in reply.get("Failed", [])}
                entries = [e for e in entries if e["Id"] in failed]
                if not entries:
                    break
            if entries:
                raise ServiceUnavailable("Could not queue the batch's work; try again.")
