"""A per-connection token bucket for client frames."""

from __future__ import annotations

import time


class RateLimit:
    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()
        self.strikes = 0  # refusals in a row

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.strikes = 0
            return True
        self.strikes += 1
        return False
