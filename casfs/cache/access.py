"""What readers did recently, for the predictive policy and for access times.

Two patterns, both cheap to see: a file read sequentially will be read on to its end, and
files read close together in time tend to be read together again.
"""

from __future__ import annotations

import time
from collections import deque

from cachetools import LRUCache

TOGETHER = 10.0  # seconds: files read this close in time count as read together
RECENT = 60.0  # seconds: a file read this recently may be read on / again


class AccessModel:
    def __init__(self) -> None:
        self.position: LRUCache[bytes, tuple[int, float, bool]] = LRUCache(maxsize=4096)
        self._recent: deque[tuple[float, bytes]] = deque(maxlen=256)
        self.together: LRUCache[bytes, set[bytes]] = LRUCache(maxsize=4096)
        self.atimes: dict[bytes, float] = {}  # block multihash -> last read, not yet saved

    def on_read(self, file: bytes, offset: int, size: int, blocks: list[bytes]) -> None:
        now = time.time()
        last = self.position.get(file)
        sequential = offset == 0 or (last is not None and last[0] == offset)
        self.position[file] = (offset + size, now, sequential)
        if last is None or now - last[1] > TOGETHER:  # a new visit to this file
            for t, other in self._recent:
                if other != file and now - t <= TOGETHER:
                    self.together.setdefault(file, set()).add(other)
                    self.together.setdefault(other, set()).add(file)
            self._recent.append((now, file))
        for mh in blocks:
            self.atimes[mh] = now

    def take_atimes(self) -> list[tuple[float, bytes]]:
        rows = [(t, mh) for mh, t in self.atimes.items()]
        self.atimes = {}
        return rows

    def predicted_files(self) -> list[tuple[bytes, int]]:
        """(file, from offset) whose blocks will likely be read soon."""
        now = time.time()
        out: dict[bytes, int] = {}
        for file, (pos, when, sequential) in list(self.position.items()):
            if now - when > RECENT:
                continue
            if sequential:
                out[file] = min(out.get(file, pos), pos)
            for other in self.together.get(file, ()):
                out[other] = 0
        return list(out.items())
