"""Inode numbers for CIDs, with the kernel's lookup counts (FUSE forget protocol).

Content is immutable, so one CID is one inode wherever it appears (under the root or inside a
directory), and attributes never change once made.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

import pyfuse3

from casfs.dag import Stat
from casfs.unixfs import Kind

ROOT = pyfuse3.ROOT_INODE
TIMEOUT = 86400.0  # content never changes: let the kernel cache names and attributes for long
BLKSIZE = 1 << 20  # cat and cp size their reads by st_blksize


@dataclass(slots=True)
class Inode:
    ino: int
    cid: bytes
    kind: Kind
    size: int
    attrs: pyfuse3.EntryAttributes
    lookups: int = 0


class InodeTable:
    def __init__(self) -> None:
        self._by_ino: dict[int, Inode] = {}
        self._by_cid: dict[bytes, Inode] = {}
        self._next = ROOT + 1
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.mtime_ns = time.time_ns()
        self.root_attrs = self._attrs(ROOT, Kind.DIRECTORY, 0)
        self.root_attrs.entry_timeout = 1.0
        self.root_attrs.attr_timeout = 1.0

    def _attrs(self, ino: int, kind: Kind, size: int) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        a.generation = 0
        a.entry_timeout = TIMEOUT
        a.attr_timeout = TIMEOUT
        if kind == Kind.DIRECTORY:
            a.st_mode = stat.S_IFDIR | 0o555
            a.st_nlink = 2
        elif kind == Kind.SYMLINK:
            a.st_mode = stat.S_IFLNK | 0o777
            a.st_nlink = 1
        else:
            a.st_mode = stat.S_IFREG | 0o444
            a.st_nlink = 1
        a.st_uid = self.uid
        a.st_gid = self.gid
        a.st_size = size
        a.st_blksize = BLKSIZE
        a.st_blocks = -(-size // 512)
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self.mtime_ns
        return a

    def get(self, ino: int) -> Inode | None:
        return self._by_ino.get(ino)

    def by_cid(self, cid: bytes) -> Inode | None:
        return self._by_cid.get(cid)

    def ref(self, cid: bytes, st: Stat | None) -> Inode:
        """The inode for cid with one more kernel reference (a lookup or readdirplus entry).

        st is needed only when cid has no inode yet."""
        inode = self._by_cid.get(cid)
        if inode is None:
            assert st is not None
            ino = self._next
            self._next += 1
            inode = Inode(ino, cid, st.kind, st.size, self._attrs(ino, st.kind, st.size))
            self._by_ino[ino] = inode
            self._by_cid[cid] = inode
        inode.lookups += 1
        return inode

    def forget(self, ino: int, nlookup: int) -> None:
        inode = self._by_ino.get(ino)
        if inode is None:
            return
        inode.lookups -= nlookup
        if inode.lookups <= 0:
            del self._by_ino[ino]
            del self._by_cid[inode.cid]

    def __len__(self) -> int:
        return len(self._by_ino)
