"""BlockFetcher: where every block the read path needs comes from.

Order: identity CIDs (the bytes are in the name) → the local store → the discovery chain, one
fetch per CID in flight however many readers want it. Blocks from outside are verified against
their hash before they are stored or returned.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import trio
from cachetools import LRUCache, TTLCache

from casfs import cid as cidmod
from casfs.errors import BlockCorrupt, BlockNotFound, CasfsError
from casfs.store import Store

log = logging.getLogger(__name__)
THREAD_PUT = 64 << 10



class Remote(Protocol):
    """What lies beyond the store (the discovery chain): returns bytes and the source's name."""

    async def retrieve(self, cid: bytes, private: bool = False) -> tuple[bytes, str]: ...

    async def retrieve_range(self, root: bytes, offset: int, leaves: list[tuple[bytes, int]]
                             ) -> tuple[list[bytes], str]: ...

    @property
    def supports_ranges(self) -> bool: ...


class BlockFetcher:
    def __init__(self, store: Store, remote: Remote | None = None,
                 failure_ttl: float = 2.0, memory_bytes: int = 64 << 20) -> None:
        self.store = store
        self.remote = remote
        # Verified blocks from outside, hot in memory: readers right behind a fetch (and DAG
        # nodes) get them without a file read.
        self.memory: LRUCache[bytes, bytes] = LRUCache(maxsize=max(memory_bytes, 1),
                                                       getsizeof=len)
        self.memory_hits = 0
        self.memory_misses = 0
        # Blocks known to belong to private content (roots from the index, children added as
        # their parents are decoded): their requests carry private=True.
        self.private: set[bytes] = set()
        self._inflight: dict[bytes, trio.Event] = {}
        # A fetch that just failed fails again at once for a moment: when readahead fails the
        # kernel retries page by page, and each retry would otherwise wait a whole deadline.
        self._failed: TTLCache[bytes, BaseException] = TTLCache(
            maxsize=65536, ttl=failure_ttl, timer=time.monotonic)

    def cached(self, cid: bytes) -> bytes | None:
        data = self.memory.get(cid)
        if data is None:
            self.memory_misses += 1
        else:
            self.memory_hits += 1
        return data

    def remember(self, cid: bytes, data: bytes) -> None:
        if len(data) <= self.memory.maxsize // 4:
            self.memory[cid] = data

    def local(self, cid: bytes) -> bytes | None:
        """The block from memory or the store; None if absent (or damaged, then dropped)."""
        inline = cidmod.identity_data(cid)
        if inline is not None:
            return inline
        data = self.memory.get(cid)
        if data is not None:
            return data
        try:
            return self.store.get(cid)
        except BlockNotFound:
            return None
        except BlockCorrupt:
            self.store.drop(cid)
            return None

    async def get(self, cid: bytes) -> bytes:
        data = self.local(cid)
        if data is not None:
            return data
        await self.ensure_local(cid)
        data = self.local(cid)
        if data is None:
            raise BlockNotFound(cidmod.to_str(cid))
        return data

    async def ensure_local(self, cid: bytes) -> None:
        """Fetch the block into the store unless it is there; one fetch per CID at a time."""
        if self.store.has(cid):
            return
        if self.remote is None:
            raise BlockNotFound(cidmod.to_str(cid))
        failed = self._failed.get(cid)
        if failed is not None:
            raise failed
        event = self._inflight.get(cid)
        if event is not None:
            await event.wait()
            if self.store.has(cid):
                return
            raise self._failed.get(cid) or BlockNotFound(cidmod.to_str(cid))
        event = self._inflight[cid] = trio.Event()
        try:
            # Verified by the chain (DiscoveryChain.retrieve checks every block against its
            # CID before returning it): hashing 256 KiB again here cost ~8% of a peer read.
            data, source = await self.remote.retrieve(cid, cid in self.private)
            self.remember(cid, data)
            private = cid in self.private
            if len(data) > THREAD_PUT:  # a file write of a big block would stall the loop
                await trio.to_thread.run_sync(self.store.put, cid, data, source, private)
            else:
                self.store.put(cid, data, source, private)
        except CasfsError as exc:
            self._failed[cid] = exc
            raise
        finally:
            del self._inflight[cid]
            event.set()

    async def ensure_range(self, root: bytes, run: list[tuple[bytes, int, int]]) -> bool:
        """Fetch consecutive raw leaves [(cid, file offset, size)] of root in one request.

        Readers that want one of these leaves meanwhile wait for this fetch instead of starting
        their own; whatever it fails to bring, they then fetch block by block."""
        if self.remote is None or not self.remote.supports_ranges:
            return False
        mine = [leaf for leaf in run if leaf[0] not in self._inflight]
        if not mine or mine != run[: len(mine)]:
            return True  # someone is already at the start of this run; leave it to them
        event = trio.Event()
        for cid, _, _ in mine:
            self._inflight[cid] = event
        try:
            datas, source = await self.remote.retrieve_range(
                root, mine[0][1], [(cid, size) for cid, _, size in mine])

            def put_all() -> None:  # writing MiBs of block files would stall the event loop
                for (cid, _, _), data in zip(mine, datas, strict=True):
                    self.store.put(cid, data, source)

            for (cid, _, _), data in zip(mine, datas, strict=True):
                self.remember(cid, data)

            await trio.to_thread.run_sync(put_all)
            return True
        except CasfsError as exc:
            log.debug("range fetch of %s failed: %s", cidmod.to_str(root), exc)
            return False
        finally:
            for cid, _, _ in mine:
                del self._inflight[cid]
            event.set()
