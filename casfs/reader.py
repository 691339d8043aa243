"""Reading a range of a file: spans from the DAG, blocks made local, bytes copied out checked.

The copy runs synchronously into one reused buffer: pyfuse3 hands the returned buffer to
fuse_reply_buf before any other task runs, so no other read can touch it in between, and the
kernel gets the bytes with no fresh 1 MiB allocation per request (first-touch memory is slow).
Block files are read from the page cache on the event loop: a thread hop would cost more than
the read.
"""

from __future__ import annotations

import logging
import time

import trio
from cachetools import LRUCache, TTLCache

from casfs import cid as cidmod
from casfs.cache.access import AccessModel
from casfs.chain.classes import current_file
from casfs.dag import Dag, Span
from casfs.errors import BlockCorrupt, BlockNotFound
from casfs.fetcher import BlockFetcher, Data
from casfs.pagecache import PagePusher
from casfs.store import blockfile

BUFFER = 1 << 20
# Reads up to this size (not the kernel's readahead, which asks for up to 1 MiB) get the rest
# of their blocks pushed into the page cache.
PUSH_BELOW = 64 << 10
BlockFile = tuple[int, blockfile.Header]  # an fd from the store's cache and the block file's header
log = logging.getLogger(__name__)


class ReadAhead:
    """Fetches the blocks after a sequential reader's position before it asks for them.

    Takes the nursery its fetches run in explicitly; with none, there is no read-ahead.
    """

    def __init__(self, dag: Dag, fetcher: BlockFetcher, nursery: trio.Nursery, window: int,
                 parallel: int = 2, range_bytes: int = 16 << 20) -> None:
        self.range_bytes = range_bytes
        self.dag = dag
        self.fetcher = fetcher
        self.nursery = nursery
        self.window = window
        self._limiter = trio.CapacityLimiter(parallel)
        self._block_limiter = trio.CapacityLimiter(16)
        self._last_end: LRUCache[bytes, int] = LRUCache(maxsize=1024)
        self._scheduled: LRUCache[bytes, int] = LRUCache(maxsize=1024)
        # Files under a complete pin (everything `casfs add`ed) are local by construction:
        # looking ahead in them cost a stat per block, ~8% of a local sequential read.
        self._local: TTLCache[bytes, bool] = TTLCache(maxsize=1024, ttl=5.0,
                                                      timer=time.monotonic)

    def _all_local(self, cid: bytes) -> bool:
        local = self._local.get(cid)
        if local is None:
            local = self._local[cid] = self.fetcher.store.index.pin_state(cid) is True
        return local

    def after_read(self, cid: bytes, offset: int, size: int, filesize: int) -> None:
        end = offset + size
        sequential = offset == 0 or self._last_end.get(cid) == offset
        self._last_end[cid] = end
        if not sequential or self._all_local(cid):
            return
        start = max(end, self._scheduled.get(cid, 0))
        stop = min(filesize, end + self.window)
        if stop - start >= min(self.window // 4, filesize - start) > 0:
            self._scheduled[cid] = stop
            self.nursery.start_soon(self._prefetch, cid, start, stop)

    async def _prefetch(self, cid: bytes, start: int, stop: int) -> None:
        try:
            leaves = await self.dag.raw_leaves(cid, start, stop)
            if leaves is None:
                spans = await self.dag.spans(cid, start, stop - start)
        except Exception as exc:  # a failed read-ahead is retried by the read itself
            log.debug("read-ahead of %s failed: %s", cidmod.to_str(cid), exc)
            return
        has = self.fetcher.has
        if leaves is None:
            for bcid, _, _ in spans:
                if not has(bcid):
                    self.nursery.start_soon(self._one, bcid)
            return
        # Runs of missing leaves, each fetched as one byte range of the file.
        run: list[tuple[bytes, int, int]] = []
        for leaf in leaves:
            if has(leaf[0]) or (run and run[-1][1] + run[-1][2] != leaf[1]):
                self._start_run(cid, run)
                run = []
            if not has(leaf[0]):
                run.append(leaf)
                if sum(size for _, _, size in run) >= self.range_bytes:
                    self._start_run(cid, run)
                    run = []
        self._start_run(cid, run)

    def _start_run(self, root: bytes, run: list[tuple[bytes, int, int]]) -> None:
        if run:
            self.nursery.start_soon(self._range, root, list(run))

    async def _range(self, root: bytes, run: list[tuple[bytes, int, int]]) -> None:
        async with self._limiter:
            if await self.fetcher.ensure_range(root, run):
                return
        # No source sends ranges (peers send blocks): fetch the run block by block, in
        # parallel, which also spreads it over several holders.
        for bcid, _, _ in run:
            if not self.fetcher.has(bcid):
                self.nursery.start_soon(self._one, bcid)

    async def _one(self, bcid: bytes) -> None:
        async with self._block_limiter:
            try:
                await self.fetcher.ensure_local(bcid, behind=True)
            except Exception as exc:
                log.debug("read-ahead of block %s failed: %s", cidmod.to_str(bcid), exc)


class Reader:
    def __init__(self, dag: Dag, fetcher: BlockFetcher, readahead: ReadAhead | None = None,
                 access: AccessModel | None = None) -> None:
        self.readahead = readahead
        self.access = access
        self.dag = dag
        self.fetcher = fetcher
        self.store = fetcher.store
        self._buf = bytearray(BUFFER)
        self.pusher: PagePusher | None = None  # set by the mount, which owns the FUSE session
        self._scratch = bytearray(blockfile.SEGMENT * 2)

    async def read(self, cid: bytes, offset: int, size: int, filesize: int = 0, inode: int = 0
                   ) -> memoryview | bytes:
        if size <= 0:
            return b""
        current_file.set((cid, filesize))  # for the content class of what this read fetches
        if self.readahead is not None and filesize:
            self.readahead.after_read(cid, offset, size, filesize)
        spans = await self.dag.spans(cid, offset, size)
        if self.access is not None:
            self.access.on_read(cid, offset, size, [cidmod.multihash_of(b) for b, _, _ in spans])
        # One pass: bytes already in hand (identity CIDs, the memory cache) are kept by
        # reference, so a cache eviction during the fetches below cannot take them away.
        held = [self._in_hand(bcid) for bcid, _, _ in spans]
        files = self._files(spans, held)
        missing = [i for i, (data, file) in enumerate(zip(held, files, strict=True))
                   if data is None and file is None]
        if missing:
            async with trio.open_nursery() as nursery:
                for i in missing:
                    nursery.start_soon(self.fetcher.ensure_local, spans[i][0], True)
            for i in missing:  # fetched blocks may still be on their way to disk
                held[i] = self.fetcher.cached(spans[i][0])
            files = self._files(spans, held)  # the awaits may have closed cached fds
        # From here on no await: the cached fds and the shared buffer stay ours.
        total = sum(length for _, _, length in spans)
        buf = self._buf if total <= len(self._buf) else bytearray(total)
        view = memoryview(buf)
        pos = 0
        for (bcid, start, length), data, file in zip(spans, held, files, strict=True):
            if data is not None:
                view[pos : pos + length] = data[start : start + length]
            else:
                fd, head = file or self.store.block_file(bcid)  # raises if still missing
                try:
                    blockfile.read_into(fd, head, view[pos : pos + length], start, self._scratch)
                except BlockCorrupt:
                    # Never serve it; drop it so the next read fetches a good copy.
                    self.store.drop(bcid)
                    raise
            pos += length
        if self.pusher is not None and inode and size <= PUSH_BELOW:
            self._push_blocks(inode, offset, spans, held, files, filesize)
        return view[:total]

    def _push_blocks(self, inode: int, offset: int, spans: list[Span],
                     held: list[Data | None], files: list[BlockFile | None],
                     filesize: int) -> None:
        """Hand the whole raw blocks under a small read to the kernel (see casfs.pagecache)."""
        assert self.pusher is not None
        pos = offset
        for (bcid, start, length), data, file in zip(spans, held, files, strict=True):
            block_at = pos - start  # raw leaves: block bytes are file bytes
            pos += length
            size = len(data) if data is not None else file[1].length if file else 0
            if not size or (start == 0 and length == size) or block_at + size > filesize \
                    or cidmod.codec_of(bcid) != cidmod.RAW \
                    or cidmod.identity_data(bcid) is not None \
                    or not self.pusher.wants(inode, block_at):
                continue  # all of it asked for already / would grow the file / not file bytes
            if data is None:
                assert file is not None
                data = bytearray(size)
                try:
                    blockfile.read_into(file[0], file[1], memoryview(data), 0, self._scratch)
                except BlockCorrupt:
                    continue  # the read itself was served; a pushed block is optional
            self.pusher.push(inode, block_at, data)

    def _in_hand(self, bcid: bytes) -> Data | None:
        inline = cidmod.identity_data(bcid)  # (may be b"": test against None, not truth)
        return self.fetcher.cached(bcid) if inline is None else inline

    def _files(self, spans: list[Span], held: list[Data | None]) -> list[BlockFile | None]:
        """Open block files (into the store's fd cache) for the spans not in hand; None where
        the block is not here. Opening is the presence test: a stat first would cost a second
        path lookup."""
        files: list[BlockFile | None] = []
        for (bcid, _, _), data in zip(spans, held, strict=True):
            file = None
            if data is None:
                try:
                    file = self.store.block_file(bcid)
                except BlockNotFound:
                    pass
                except BlockCorrupt:
                    self.store.drop(bcid)  # a damaged header: fetch a good copy
            files.append(file)
        return files
