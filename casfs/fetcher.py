"""BlockFetcher: where every block the read path needs comes from.

Order: identity CIDs (the bytes are in the name) → the local store → the discovery chain, one
fetch per CID in flight however many readers want it. Blocks from outside are verified against
their hash before they are stored or returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import trio
from cachetools import TTLCache

from casfs import cid as cidmod
from casfs.errors import BlockCorrupt, BlockNotFound, CasfsError
from casfs.store import Store

log = logging.getLogger(__name__)

# A remote lookup: returns the verified bytes and the name of the source, or raises.
Remote = Callable[[bytes], Awaitable[tuple[bytes, str]]]


class BlockFetcher:
    def __init__(self, store: Store, remote: Remote | None = None,
                 failure_ttl: float = 2.0) -> None:
        self.store = store
        self.remote = remote
        self._inflight: dict[bytes, trio.Event] = {}
        # A fetch that just failed fails again at once for a moment: when readahead fails the
        # kernel retries page by page, and each retry would otherwise wait a whole deadline.
        self._failed: TTLCache[bytes, BaseException] = TTLCache(
            maxsize=65536, ttl=failure_ttl, timer=time.monotonic)

    def local(self, cid: bytes) -> bytes | None:
        """The block from the store, or None if it is not there (or damaged, then dropped)."""
        inline = cidmod.identity_data(cid)
        if inline is not None:
            return inline
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
            data, source = await self.remote(cid)
            if not cidmod.verify(cid, data):  # sources verify too; this is the last gate
                raise BlockCorrupt(f"{cidmod.to_str(cid)} from {source} failed verification")
            self.store.put(cid, data, source)
        except CasfsError as exc:
            self._failed[cid] = exc
            raise
        finally:
            del self._inflight[cid]
            event.set()
