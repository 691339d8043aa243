"""Reading a range of a file: spans from the DAG, blocks made local, bytes copied out checked.

The copy runs synchronously into one reused buffer: pyfuse3 hands the returned buffer to
fuse_reply_buf before any other task runs, so no other read can touch it in between, and the
kernel gets the bytes with no fresh 1 MiB allocation per request (first-touch memory is slow).
Block files are read from the page cache on the event loop: a thread hop would cost more than
the read.
"""

from __future__ import annotations

import os

import trio

from casfs import cid as cidmod
from casfs.dag import Dag
from casfs.errors import BlockCorrupt, BlockNotFound
from casfs.fetcher import BlockFetcher
from casfs.store import blockfile

BUFFER = 1 << 20


class Reader:
    def __init__(self, dag: Dag, fetcher: BlockFetcher) -> None:
        self.dag = dag
        self.fetcher = fetcher
        self.store = fetcher.store
        self._buf = bytearray(BUFFER)
        self._scratch = bytearray(blockfile.SEGMENT * 2)

    async def read(self, cid: bytes, offset: int, size: int) -> memoryview | bytes:
        if size <= 0:
            return b""
        spans = await self.dag.spans(cid, offset, size)
        fds = await self._open_all(spans)
        try:
            total = sum(length for _, _, length in spans)
            buf = self._buf if total <= len(self._buf) else bytearray(total)
            view = memoryview(buf)
            pos = 0
            for (bcid, start, length), fd in zip(spans, fds, strict=True):
                if fd < 0:
                    view[pos : pos + length] = cidmod.identity_data(bcid)[start : start + length]
                else:
                    try:
                        blockfile.read_into(fd, view[pos : pos + length], start, self._scratch)
                    except BlockCorrupt:
                        # Never serve it; drop it so the next read fetches a good copy.
                        self.store.drop(bcid)
                        raise
                pos += length
            return view[:total]
        finally:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)

    async def _open_all(self, spans: list[tuple[bytes, int, int]]) -> list[int]:
        fds: list[int] = []
        missing: list[int] = []
        try:
            for i, (bcid, _, _) in enumerate(spans):
                if cidmod.identity_data(bcid) is not None:
                    fds.append(-1)
                    continue
                try:
                    fds.append(self.store.open_block(bcid))
                except BlockNotFound:
                    fds.append(-1)
                    missing.append(i)
            if missing:
                async with trio.open_nursery() as nursery:
                    for i in missing:
                        nursery.start_soon(self.fetcher.ensure_local, spans[i][0])
                for i in missing:
                    fds[i] = self.store.open_block(spans[i][0])
        except BaseException:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
            raise
        return fds
