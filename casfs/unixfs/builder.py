"""Streaming UnixFS file builder: 256 KiB raw leaves, balanced layout, 174 links per node.

This reproduces what `ipfs add --cid-version=1 --raw-leaves` builds (kubo's balanced layout):
leaves are grouped 174 at a time into internal nodes, those 174 at a time into the next level,
and so on, with the last group of every level left partial. A single-leaf file is the leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from casfs import cid as cidmod
from casfs.unixfs.node import Link, encode_file

CHUNK_SIZE = 262144
MAX_LINKS = 174

PutBlock = Callable[[bytes, bytes], None]  # (cid, block bytes)


@dataclass(slots=True)
class _Child:
    cid: bytes
    tsize: int  # bytes of the whole sub-DAG
    filesize: int  # content bytes under it


class FileBuilder:
    """Feed content with write(); finish() returns (root cid, content size, dag size)."""

    def __init__(self, put: PutBlock) -> None:
        self._put = put
        self._buf = bytearray()
        self._levels: list[list[_Child]] = [[]]
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self._buf += data
        self.size += len(data)
        if len(self._buf) < 2 * CHUNK_SIZE:
            return
        view = memoryview(self._buf)
        # Keep the last chunk back so that finish() still has data for the final leaf.
        usable = (len(self._buf) - 1) // CHUNK_SIZE * CHUNK_SIZE
        for start in range(0, usable, CHUNK_SIZE):
            self._leaf(bytes(view[start : start + CHUNK_SIZE]))
        view.release()
        del self._buf[:usable]

    def _leaf(self, chunk: bytes) -> None:
        cid = cidmod.make(cidmod.RAW, chunk)
        self._put(cid, chunk)
        self._push(0, _Child(cid, len(chunk), len(chunk)))

    def _push(self, level: int, child: _Child) -> None:
        if level == len(self._levels):
            self._levels.append([])
        row = self._levels[level]
        if len(row) == MAX_LINKS:
            self._push(level + 1, self._pack(row))
            row.clear()
        row.append(child)

    def _pack(self, children: list[_Child]) -> _Child:
        links = [Link(c.cid, "", c.tsize) for c in children]
        block = encode_file(links, [c.filesize for c in children])
        cid = cidmod.make(cidmod.DAG_PB, block)
        self._put(cid, block)
        return _Child(cid, len(block) + sum(c.tsize for c in children),
                      sum(c.filesize for c in children))

    def finish(self) -> tuple[bytes, int, int]:
        for start in range(0, len(self._buf), CHUNK_SIZE):
            self._leaf(bytes(self._buf[start : start + CHUNK_SIZE]))
        self._buf.clear()
        if not self._levels[0]:  # empty file: one empty raw leaf, as kubo makes it
            self._leaf(b"")
        level = 0
        while True:
            row = self._levels[level]
            if level == len(self._levels) - 1 and len(row) == 1:
                root = row[0]
                return root.cid, root.filesize, root.tsize
            packed = self._pack(row)
            row.clear()
            self._push(level + 1, packed)
            level += 1
