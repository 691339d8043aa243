"""Handing whole verified blocks to the kernel's page cache (FUSE_NOTIFY_STORE).

A small read (a random 4 KiB read, say) makes the kernel ask for just its pages. casfs's unit
is the 256 KiB block: when a small read lands in a block, the rest of that block goes into the
page cache too, so later reads in it never reach this process — like readahead, but for
random access and bounded by the block. Immutable content makes this safe: a pushed page can
never go stale.

The push runs in one thread of its own: the kernel locks each page it stores, and a page that
an unanswered READ holds locked would make the event loop wait for itself.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading

import pyfuse3
from cachetools import LRUCache

log = logging.getLogger(__name__)
QUEUE_BYTES = 32 << 20  # pushes waiting beyond this are dropped: they are only a speed-up


class PagePusher:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[int, int, bytes | bytearray | memoryview] | None] \
            = queue.SimpleQueue()
        self._queued = 0
        self._lock = threading.Lock()
        # (inode, offset) pushed lately: a block is pushed once, not on every read in it.
        self._pushed: LRUCache[tuple[int, int], bool] = LRUCache(maxsize=65536)
        self.pushed_bytes = 0
        self._thread: threading.Thread | None = None

    def wants(self, inode: int, offset: int) -> bool:
        return (inode, offset) not in self._pushed and self._queued < QUEUE_BYTES

    def push(self, inode: int, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Queue data for the page cache of inode at offset (whole pages, within the file)."""
        self._pushed[(inode, offset)] = True
        with self._lock:
            self._queued += len(data)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="casfs-pagecache",
                                            daemon=True)
            self._thread.start()
        self._queue.put((inode, offset, data))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            inode, offset, data = item
            try:
                pyfuse3.notify_store(inode, offset, data)
                self.pushed_bytes += len(data)
            except OSError as exc:  # ENOENT: the kernel forgot the inode; ENOSYS: old kernel
                if exc.errno not in (errno.ENOENT, errno.ENOSYS):
                    log.debug("page cache push of inode %d failed: %s", inode, exc)
            finally:
                with self._lock:
                    self._queued -= len(data)

    def close(self) -> None:
        """Stop the thread; call before the FUSE session closes."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None
