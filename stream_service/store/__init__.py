"""Where stream events and leases live: a base interface with DynamoDB and memory backends."""

from stream_service.store.base import (
    LeaseLost,
    PollResult,
    ReadResult,
    Slot,
    StoredEvent,
    StreamMeta,
    StreamStore,
)

__all__ = [
    "LeaseLost",
    "PollResult",
    "ReadResult",
    "Slot",
    "StoredEvent",
    "StreamMeta",
    "StreamStore",
]
