#!/usr/bin/env python3
"""The smallest pyfuse3 file system that serves bench_local's files: the pyfuse3 floor.

It does what passthrough.c does (the regular files of one directory, flat, read-only, long
entry/attr timeouts, keep_cache) with no casfs logic at all: lookup is one lstat, read is one
pread. `bench_local.py --pyfuse3-as-casfs` measures it where casfs would be, so its ratios say
how close to the C baseline any pyfuse3 file system can get on this machine, and casfs's own
ratios can be read against that floor.

    pyfuse3_passthrough.py SRCDIR MOUNTPOINT -f

Runs in the foreground until unmounted (fusermount3 -u).
"""

from __future__ import annotations

import errno
import os
import stat
import sys

import pyfuse3
import trio

TIMEOUT = 3600.0  # as passthrough.c's CACHE_TIMEOUT_S


class Flat(pyfuse3.Operations):
    def __init__(self, src: str) -> None:
        super().__init__()
        self.src = src
        self.names: dict[int, str] = {}  # inode -> file name
        self.fds: dict[int, int] = {}  # inode -> open fd, kept while the mount lives

    def _attrs(self, st: os.stat_result, ino: int) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        a.st_mode = st.st_mode & ~0o222
        a.st_nlink = 1
        a.st_size = st.st_size
        a.st_mtime_ns = st.st_mtime_ns
        a.st_blksize = 4096
        a.st_blocks = (st.st_size + 511) // 512
        a.entry_timeout = a.attr_timeout = TIMEOUT
        return a

    async def lookup(self, parent: int, name: bytes, ctx: pyfuse3.RequestContext
                     ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(name)
        try:
            st = os.lstat(f"{self.src}/{text}")
        except OSError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        if parent != pyfuse3.ROOT_INODE or not stat.S_ISREG(st.st_mode):
            raise pyfuse3.FUSEError(errno.ENOENT)
        self.names[st.st_ino] = text
        return self._attrs(st, st.st_ino)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if inode == pyfuse3.ROOT_INODE:
            return self._attrs(os.stat(self.src), inode)
        return self._attrs(os.lstat(f"{self.src}/{self.names[inode]}"), inode)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext
                   ) -> pyfuse3.FileInfo:
        if inode not in self.fds:
            self.fds[inode] = os.open(f"{self.src}/{self.names[inode]}", os.O_RDONLY)
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return os.pread(self.fds[fh], size, off)

    async def release(self, fh: int) -> None:
        pass


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "-f"]
    if len(args) != 2:
        print(f"usage: {sys.argv[0]} SRCDIR MOUNTPOINT -f", file=sys.stderr)
        return 2
    src, mnt = args
    fs = Flat(os.path.abspath(src))
    pyfuse3.init(fs, mnt, {"fsname=pyfuse3min", "subtype=pyfuse3min", "ro"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
