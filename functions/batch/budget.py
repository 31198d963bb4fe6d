"""How much of a worker invocation is left for upstream calls.

A Lambda invocation ends at its timeout whatever it is doing: a call still running then is
lost, and so is the whole SQS batch (its messages come back only after the queue's
visibility timeout). So the worker starts an upstream call, or sleeps before a retry, only
if the call can still end ``BATCH_HANDBACK_MARGIN_S`` before the invocation does (the
margin writes the results and hands the rest back); each call is bounded by
``OPENAI_TIMEOUT_S``. What cannot start is handed back to the queue
(:class:`OutOfTime` -> ``batchItemFailures``) and runs in the next invocation, where the
lines already done are skipped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

# infra.config checks OPENAI_TIMEOUT_S + this fits the worker's timeout (and passes both).
HANDBACK_MARGIN_S = 15.0


class OutOfTime(Exception):
    """The invocation has no time left for another upstream call: hand the message back."""


@dataclass(frozen=True, slots=True)
class Budget:
    # time.monotonic() by which every upstream call must have ended
    ends_at: float
    call_timeout_s: float

    @classmethod
    def unbounded(cls, call_timeout_s: float) -> Budget:
        """No invocation deadline (the local polling worker, tests)."""
        return cls(math.inf, call_timeout_s)

    @classmethod
    def of_invocation(cls, remaining_ms: int, call_timeout_s: float, margin_s: float) -> Budget:
        """From the Lambda context's ``get_remaining_time_in_millis()``."""
        return cls(time.monotonic() + remaining_ms / 1000 - margin_s, call_timeout_s)

    def may_start(self, after_s: float = 0.0) -> bool:
        """Whether a call started ``after_s`` from now ends in time."""
        return time.monotonic() + after_s + self.call_timeout_s <= self.ends_at

    def require(self, after_s: float = 0.0) -> None:
        if not self.may_start(after_s):
            raise OutOfTime
