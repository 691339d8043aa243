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
# Verified block bytes: ranges hand out views of one buffer rather than copies.
Data = bytes | memoryview
THREAD_PUT = 64 << 10
# Verified blocks waiting for their file write, served from memory meanwhile.
WRITE_BEHIND_BYTES = 64 << 20


class Remote(Protocol):
    """What lies beyond the store (the discovery chain): returns bytes and the source's name."""

    async def retrieve(self, cid: bytes, private: bool = False) -> tuple[bytes, str]: ...

    async def retrieve_range(self, root: bytes, offset: int, leaves: list[tuple[bytes, int]]
                             ) -> tuple[list[Data], str]: ...

    @property
    def supports_ranges(self) -> bool: ...


class BlockFetcher:
    def __init__(self, store: Store, remote: Remote | None = None,
                 failure_ttl: float = 2.0, memory_bytes: int = 64 << 20,
                 nursery: trio.Nursery | None = None) -> None:
        self.store = store
        self.remote = remote
        # Write-behind: a reader needs a fetched block's bytes, not its file. Creating block
        # files on ext4 stalls for milliseconds while housekeeping's syncfs() runs, and a read
        # waiting for that ran peer transfers at ~60% speed. With a nursery, blocks fetched for
        # reads are written in the background and served from _unwritten until they are.
        self.nursery = nursery
        self._unwritten: dict[bytes, Data] = {}
        self._unwritten_bytes = 0
        self._writers = trio.CapacityLimiter(2)
        # Verified blocks from outside, hot in memory: readers right behind a fetch (and DAG
        # nodes) get them without a file read.
        self.memory: LRUCache[bytes, Data] = LRUCache(maxsize=max(memory_bytes, 1),
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

    def has(self, cid: bytes) -> bool:
        return cid in self._unwritten or self.store.has(cid)

    def _in_memory(self, cid: bytes) -> Data | None:
        data = self.memory.get(cid)
        return self._unwritten.get(cid) if data is None else data

    def cached(self, cid: bytes) -> Data | None:
        data = self._in_memory(cid)
        if data is None:
            self.memory_misses += 1
        else:
            self.memory_hits += 1
        return data

    def remember(self, cid: bytes, data: Data) -> None:
        if len(data) <= self.memory.maxsize // 4:
            self.memory[cid] = data

    def local(self, cid: bytes) -> Data | None:
        """The block from memory or the store; None if absent (or damaged, then dropped)."""
        inline = cidmod.identity_data(cid)
        if inline is not None:
            return inline
        data = self._in_memory(cid)
        if data is not None:
            return data
        try:
            return self.store.get(cid)
        except BlockNotFound:
            return None
        except BlockCorrupt:
            self.store.drop(cid)
            return None

    async def get(self, cid: bytes) -> Data:
        data = self.local(cid)
        if data is not None:
            return data
        await self.ensure_local(cid)
        data = self.local(cid)
        if data is None:
            raise BlockNotFound(cidmod.to_str(cid))
        return data

    async def ensure_local(self, cid: bytes, behind: bool = False) -> None:
        """Fetch the block into the store unless it is there; one fetch per CID at a time.

        behind: for readers — the block may still be on its way to disk on return (then
        cached() has it); pins and imports leave it False."""
        if self.has(cid):
            return
        if self.remote is None:
            raise BlockNotFound(cidmod.to_str(cid))
        failed = self._failed.get(cid)
        if failed is not None:
            raise failed
        while (event := self._inflight.get(cid)) is not None:
            await event.wait()
            if self.has(cid):
                return
            failed = self._failed.get(cid)
            if failed is not None:
                raise failed
            # A range fetch that failed does not mark its blocks failed: fetch it ourselves.
        event = self._inflight[cid] = trio.Event()
        try:
            # Verified by the chain (DiscoveryChain.retrieve checks every block against its
            # CID before returning it): hashing 256 KiB again here cost ~8% of a peer read.
            data, source = await self.remote.retrieve(cid, cid in self.private)
            self.remember(cid, data)
            await self._keep([(cid, data)], source, cid in self.private, behind)
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
            blocks = [(cid, data) for (cid, _, _), data in zip(mine, datas, strict=True)]
            for cid, data in blocks:
                self.remember(cid, data)
            await self._keep(blocks, source, False, behind=True)
            return True
        except CasfsError as exc:
            log.debug("range fetch of %s failed: %s", cidmod.to_str(root), exc)
            return False
        finally:
            for cid, _, _ in mine:
                del self._inflight[cid]
            event.set()

    async def _keep(self, blocks: list[tuple[bytes, Data]], source: str, private: bool,
                    behind: bool) -> None:
        """Write verified blocks to the store: small ones now, big ones in a worker thread
        (a file write would stall the loop) — awaited, or in the background when behind."""
        big = [(cid, data) for cid, data in blocks if len(data) > THREAD_PUT]
        for cid, data in blocks:
            if len(data) <= THREAD_PUT:
                self.store.put(cid, data, source, private)
        if not big:
            return
        if not behind or self.nursery is None or self._unwritten_bytes >= WRITE_BEHIND_BYTES:
            await trio.to_thread.run_sync(self._put_all, big, source, private)
            return
        for cid, data in big:
            self._unwritten[cid] = data
            self._unwritten_bytes += len(data)
        self.nursery.start_soon(self._write_behind, big, source, private)

    def _put_all(self, blocks: list[tuple[bytes, Data]], source: str, private: bool) -> None:
        for cid, data in blocks:
            self.store.put(cid, data, source, private)

    async def _write_behind(self, blocks: list[tuple[bytes, Data]], source: str,
                            private: bool) -> None:
        try:
            async with self._writers:
                await trio.to_thread.run_sync(self._put_all, blocks, source, private)
        except OSError as exc:  # readers refetch what is missing; the store stays consistent
            log.warning("could not write %d fetched blocks to the store: %s", len(blocks), exc)
        finally:
            for cid, data in blocks:
                if self._unwritten.pop(cid, None) is not None:
                    self._unwritten_bytes -= len(data)
