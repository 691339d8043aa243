"""Token buckets: bandwidth limits in bytes per second, honoured by waiting, never by dropping."""

from __future__ import annotations

import trio


class TokenBucket:
    """rate bytes/s with a burst of one second's worth. rate 0 means no limit."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.stamp: float | None = None

    async def consume(self, n: int) -> None:
        if not self.rate:
            return
        now = trio.current_time()
        if self.stamp is None:
            self.stamp = now
        self.tokens = min(float(self.rate), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n  # may go negative: a block bigger than the burst still goes, later
        if self.tokens < 0:
            await trio.sleep(-self.tokens / self.rate)
