"""Marking a source down after it fails to answer, and bringing it back without a remount."""

from __future__ import annotations

import logging
import time

from casfs.chain.base import SourceStats


class Backoff:
    """Down for `first` seconds after a failure, doubling up to `cap` while failures go on.

    Logs one line when the source goes down and one when it is back, not one per request.
    """

    def __init__(self, name: str, stats: SourceStats, log: logging.Logger,
                 first: float = 2.0, cap: float = 30.0) -> None:
        self.name = name
        self.stats = stats
        self.log = log
        self.first = first
        self.cap = cap
        self.delay = 0.0

    def failed(self, why: str) -> None:
        if self.delay == 0.0:
            self.log.warning("%s is unreachable (%s); skipping it, will retry", self.name, why)
        self.delay = min(self.cap, self.delay * 2 if self.delay else self.first)
        self.stats.down_until = time.monotonic() + self.delay
        self.stats.last_error = why

    def ok(self) -> None:
        if self.delay:
            self.log.info("%s is reachable again", self.name)
        self.delay = 0.0
        self.stats.down_until = 0.0
