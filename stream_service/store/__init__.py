"""Where stream events and leases live: a base interface with DynamoDB and memory backends."""

from stream_service.store.base import (
    Admission,
    Holder,
    LeaseLost,
    PollResult,
    ReadResult,
    StoredEvent,
    StreamMeta,
    StreamStore,
)

__all__ = [
    "Admission",
    "Holder",
    "LeaseLost",
    "PollResult",
    "ReadResult",
    "StoredEvent",
    "StreamMeta",
    "StreamStore",
]
