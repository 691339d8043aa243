"""The FUSE operations. The only module that raises FUSEError; everything below raises casfs
exceptions, translated in one place (`_errno`)."""

from __future__ import annotations

import errno
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pyfuse3

from casfs import cid as cidmod
from casfs.errors import (
    BadName,
    BlockCorrupt,
    BlockNotFound,
    DeadlineExceeded,
    SourceUnavailable,
    UnsupportedContent,
)
from casfs.inodes import ROOT, Inode, InodeTable
from casfs.reader import Reader
from casfs.tree import Tree
from casfs.unixfs import Kind
from casfs.xattrs import PREFIX as XATTR_PREFIX
from casfs.xattrs import XattrError, Xattrs

log = logging.getLogger(__name__)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT


def _errno(exc: BaseException) -> int | None:
    if isinstance(exc, BaseExceptionGroup):
        codes = [_errno(e) for e in exc.exceptions]
        return next((c for c in codes if c is not None and c != errno.ENOENT), codes[0])
    if isinstance(exc, BadName | BlockNotFound):
        return errno.ENOENT
    if isinstance(exc, BlockCorrupt | DeadlineExceeded | SourceUnavailable | UnsupportedContent):
        return errno.EIO
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return None


@asynccontextmanager
async def translated(what: str, missing: int = errno.ENOENT, unreachable: int = errno.EIO
                     ) -> AsyncIterator[None]:
    """Turn casfs errors into FUSEError.

    `missing`: the errno for content no source has; `unreachable`: for content that could not
    be fetched by the deadline (a lookup says ENOENT for both, a read EIO)."""
    try:
        yield
    except pyfuse3.FUSEError:
        raise
    except Exception as exc:
        code = _errno(exc)
        if code is None:
            log.exception("%s failed", what)
            code = errno.EIO
        elif code == errno.ENOENT:
            code = missing
        elif code == errno.EIO and _is_unreachable(exc):
            code = unreachable
        if code == errno.EIO:
            log.warning("%s: %s", what, exc)
        raise pyfuse3.FUSEError(code) from None


def _xattr_errno(exc: XattrError) -> int:
    return pyfuse3.ENOATTR if exc.errno == errno.ENODATA else exc.errno


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_unreachable(e) for e in exc.exceptions)
    return isinstance(exc, DeadlineExceeded | SourceUnavailable)


class Operations(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, tree: Tree, reader: Reader, xattrs: Xattrs | None = None) -> None:
        super().__init__()
        self.tree = tree
        self.reader = reader
        self.xattrs = xattrs or Xattrs(tree)
        self.inodes = InodeTable()
        self._dirs: dict[int, list[tuple[bytes, bytes]]] = {}
        # CIDs of files open right now: eviction leaves their blocks alone.
        self.open_files: Counter[bytes] = Counter()
        self._next_fh = 1

    def _inode(self, ino: int) -> Inode:
        inode = self.inodes.get(ino)
        if inode is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return inode

    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
                     ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(name)
        async with translated(f"lookup {text}", unreachable=errno.ENOENT):
            if parent_inode == ROOT:
                cid = await self.tree.resolve_root_name(text)
            else:
                parent = self._inode(parent_inode)
                if parent.kind != Kind.DIRECTORY:
                    raise pyfuse3.FUSEError(errno.ENOTDIR)
                cid = await self.tree.child(parent.cid, text)
            known = self.inodes.by_cid(cid) is not None
            st = None if known else await self.tree.stat(cid)
            return self.inodes.ref(cid, st).attrs

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if inode == ROOT:
            return self.inodes.root_attrs
        return self._inode(inode).attrs

    def forget(self, inode_list: list[tuple[int, int]]) -> None:  # type: ignore[override]
        for ino, nlookup in inode_list:
            self.inodes.forget(ino, nlookup)

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        async with translated("opendir"):
            if inode == ROOT:
                entries = [(cidmod.to_str(r.cid).encode(), r.cid) for r in self.tree.roots()]
            else:
                node = self._inode(inode)
                if node.kind != Kind.DIRECTORY:
                    raise pyfuse3.FUSEError(errno.ENOTDIR)
                entries = [(os.fsencode(n), c) for n, c in await self.tree.children(node.cid)]
        fh = self._next_fh
        self._next_fh += 1
        self._dirs[fh] = entries
        return fh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        entries = self._dirs.get(fh, [])
        for i in range(start_id, len(entries)):
            name, cid = entries[i]
            async with translated("readdir"):
                inode = self.inodes.by_cid(cid)
                st = None if inode is not None else await self.tree.stat(cid)
            inode = self.inodes.ref(cid, st)
            if not pyfuse3.readdir_reply(token, name, inode.attrs, i + 1):
                self.inodes.forget(inode.ino, 1)  # the kernel did not take this entry
                return

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._inode(inode)
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        if node.kind == Kind.DIRECTORY:
            raise pyfuse3.FUSEError(errno.EISDIR)
        self.open_files[node.cid] += 1
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> memoryview | bytes:
        node = self._inode(fh)
        size = min(size, node.size - off)
        async with translated(f"read {cidmod.to_str(node.cid)}@{off}", missing=errno.EIO):
            return await self.reader.read(node.cid, off, size, node.size, fh)

    async def release(self, fh: int) -> None:
        node = self.inodes.get(fh)
        if node is not None:
            self.open_files[node.cid] -= 1
            if self.open_files[node.cid] <= 0:
                del self.open_files[node.cid]

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._inode(inode)
        async with translated("readlink", missing=errno.EIO):
            return await self.tree.readlink(node.cid)

    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        if mode & os.W_OK:
            raise pyfuse3.FUSEError(errno.EROFS)
        return True

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = os.statvfs(self.tree.store.home)
        data = pyfuse3.StatvfsData()
        data.f_bsize = st.f_bsize
        data.f_frsize = st.f_frsize
        data.f_blocks = st.f_blocks
        data.f_bfree = st.f_bfree
        data.f_bavail = st.f_bavail
        data.f_files = len(self.inodes)
        data.f_ffree = data.f_favail = 0
        data.f_namemax = 255
        return data

    # Extended attributes: user.cas.* (casfs/xattrs.py).

    def _xattr_node(self, inode: int, name: bytes) -> tuple[Inode, str]:
        key = os.fsdecode(name)
        if inode == ROOT or not key.startswith(XATTR_PREFIX):
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return self._inode(inode), key[len(XATTR_PREFIX):]

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        node, key = self._xattr_node(inode, name)
        async with translated(f"getxattr {key}", missing=errno.EIO):
            try:
                return await self.xattrs.get(node, key)
            except XattrError as exc:
                raise pyfuse3.FUSEError(_xattr_errno(exc)) from None

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        if inode == ROOT:
            return []
        return [n.encode() for n in self.xattrs.names(self._inode(inode))]

    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        node, key = self._xattr_node(inode, name)
        try:
            self.xattrs.set(node, key, value)
        except XattrError as exc:
            raise pyfuse3.FUSEError(_xattr_errno(exc)) from None

    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        node, key = self._xattr_node(inode, name)
        try:
            self.xattrs.remove(node, key)
        except XattrError as exc:
            raise pyfuse3.FUSEError(_xattr_errno(exc)) from None

    # Content-addressed and immutable: every change is refused.

    async def _erofs(self, *args: object, **kwargs: object) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    setattr = mknod = mkdir = unlink = rmdir = symlink = rename = link = _erofs  # type: ignore
    create = write = _erofs  # type: ignore
