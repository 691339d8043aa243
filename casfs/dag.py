"""Walking UnixFS DAGs: what a CID is, and which block bytes hold a range of a file."""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from itertools import accumulate

from cachetools import LRUCache

from casfs import cid as cidmod
from casfs.errors import BlockNotFound
from casfs.fetcher import BlockFetcher
from casfs.store import blockfile
from casfs.unixfs import Kind, Node, decode

# A span of file content: (block cid, offset inside the block's bytes, length).
Span = tuple[bytes, int, int]


@dataclass(frozen=True, slots=True)
class Entry:
    node: Node
    # starts[i]: file offset (relative to this node) where child i's content begins.
    starts: tuple[int, ...]
    names: dict[str, int] | None  # directories: link name -> link index


@dataclass(frozen=True, slots=True)
class Stat:
    kind: Kind
    size: int


class Dag:
    def __init__(self, fetcher: BlockFetcher, max_nodes: int = 16384) -> None:
        self.fetcher = fetcher
        self._nodes: LRUCache[bytes, Entry] = LRUCache(maxsize=max_nodes)

    async def entry(self, cid: bytes) -> Entry:
        entry = self._nodes.get(cid)
        if entry is None:
            node = decode(cid, await self.fetcher.get(cid))
            starts = tuple(accumulate(node.blocksizes[:-1], initial=node.data_length)) \
                if node.blocksizes else ()
            names = ({link.name: i for i, link in enumerate(node.links)}
                     if node.kind == Kind.DIRECTORY else None)
            if cid in self.fetcher.private:  # what lies under private content is private too
                self.fetcher.private.update(link.cid for link in node.links)
            entry = self._nodes[cid] = Entry(node, starts, names)
        return entry

    async def stat(self, cid: bytes) -> Stat:
        if cidmod.codec_of(cid) == cidmod.RAW:
            return Stat(Kind.FILE, await self._raw_size(cid))
        node = (await self.entry(cid)).node
        if node.kind == Kind.DIRECTORY:
            return Stat(Kind.DIRECTORY, len(node.links))
        if node.kind == Kind.SYMLINK:
            return Stat(Kind.SYMLINK, node.data_length)
        return Stat(Kind.FILE, node.filesize)

    async def _raw_size(self, cid: bytes) -> int:
        inline = cidmod.identity_data(cid)
        if inline is not None:
            return len(inline)
        store = self.fetcher.store
        try:
            fd = store.open_block(cid)
        except BlockNotFound:
            return len(await self.fetcher.get(cid))
        try:
            return blockfile.read_header(fd).length
        finally:
            os.close(fd)

    async def child(self, cid: bytes, name: str) -> bytes | None:
        entry = await self.entry(cid)
        if entry.names is None:
            return None
        i = entry.names.get(name)
        return None if i is None else entry.node.links[i].cid

    async def spans(self, cid: bytes, offset: int, size: int) -> list[Span]:
        out: list[Span] = []
        await self._walk(cid, offset, offset + size, out)
        return out

    async def _walk(self, cid: bytes, start: int, end: int, out: list[Span]) -> None:
        """Append the spans of content [start, end) of the node cid (offsets node-relative)."""
        if cidmod.codec_of(cid) == cidmod.RAW:
            out.append((cid, start, end - start))
            return
        entry = await self.entry(cid)
        node = entry.node
        if start < node.data_length:
            stop = min(end, node.data_length)
            out.append((cid, node.data_offset + start, stop - start))
            start = stop
        if start >= end or not node.links:
            return
        i = bisect.bisect_right(entry.starts, start) - 1
        links, sizes, starts = node.links, node.blocksizes, entry.starts
        while i < len(links) and start < end:
            child_start = starts[i]
            stop = min(end, child_start + sizes[i])
            if stop > start:
                child = links[i].cid
                if cidmod.codec_of(child) == cidmod.RAW:  # a leaf: no call, no await
                    out.append((child, start - child_start, stop - start))
                else:
                    await self._walk(child, start - child_start, stop - child_start, out)
            start = stop
            i += 1

    async def raw_leaves(self, cid: bytes, start: int, stop: int
                         ) -> list[tuple[bytes, int, int]] | None:
        """Whole raw leaves covering [start, stop) as (cid, file offset, size), in order; None
        if any content there lives in dag-pb nodes (then a byte range cannot be checked leaf by
        leaf against leaf CIDs)."""
        out: list[tuple[bytes, int, int]] = []
        ok = await self._leaves(cid, 0, None, start, stop, out)
        return out if ok else None

    async def _leaves(self, cid: bytes, base: int, size: int | None, start: int, stop: int,
                      out: list[tuple[bytes, int, int]]) -> bool:
        if cidmod.codec_of(cid) == cidmod.RAW:
            if size is None:
                return False
            out.append((cid, base, size))
            return True
        entry = await self.entry(cid)
        node = entry.node
        if node.data_length or not node.links:
            return False
        i = max(0, bisect.bisect_right(entry.starts, start - base) - 1)
        while i < len(node.links) and base + entry.starts[i] < stop:
            child_base = base + entry.starts[i]
            if not await self._leaves(node.links[i].cid, child_base, node.blocksizes[i],
                                      start, stop, out):
                return False
            i += 1
        return True
