"""The local content-addressed store: block files plus the SQLite index.

Block files are named by multihash (as kubo's flatfs does), so a raw and a dag-pb CID of the
same bytes share one file. Writes go to a temp file and are renamed into place; `sync()` makes
them durable with one syncfs() before the index commit that reports them stored, instead of one
fsync per block.
"""

from __future__ import annotations

import base64
import ctypes
import itertools
import logging
import os
import resource
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from casfs import cid as cidmod
from casfs.errors import BlockCorrupt, BlockNotFound
from casfs.store import blockfile
from casfs.store.db import Index

log = logging.getLogger(__name__)
_libc = ctypes.CDLL(None, use_errno=True)
FD_CACHE_MAX = 4096  # a 1 GiB file's blocks: random reads in it stop re-opening files
_SHARD_CHARS = "abcdefghijklmnopqrstuvwxyz234567"  # base32, as in _relpath


@lru_cache(maxsize=65536)
def _relpath(mh: bytes) -> str:
    name = base64.b32encode(mh).decode().rstrip("=").lower()
    return f"{name[-3:-1]}/{name}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.blocks_dir = home / "blocks"
        self.tmp_dir = home / "tmp"
        fresh = not self.blocks_dir.exists()
        for d in (home, self.blocks_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        if fresh:  # all 1024 shard directories now: a mkdir per shard mid-read stalls for ms
            for a in _SHARD_CHARS:
                for b in _SHARD_CHARS:
                    (self.blocks_dir / f"{a}{b}").mkdir(exist_ok=True)
        self.index = Index(home / "index.sqlite")
        # Open block files, most recent last: open+close per block read cost ~10 µs, a sixth
        # of what a 1 MiB FUSE read may spend in casfs; the parsed header comes with each.
        # See block_file() for the rule of use.
        self._fds: OrderedDict[bytes, tuple[int, blockfile.Header]] = OrderedDict()
        # A quarter of the fd limit at most, so sockets, SQLite and imports have room.
        self._fd_cache = max(16, min(FD_CACHE_MAX,
                                     resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4))
        self._tmp_seq = itertools.count(1)  # next() is atomic: put() may run in threads
        self._pending: list[tuple[bytes, int, str, bool]] = []
        self._clean_tmp()

    @classmethod
    @contextmanager
    def open(cls, home: Path) -> Iterator[Store]:
        store = cls(home)
        try:
            yield store
        finally:
            store.close()

    def close(self) -> None:
        if self._pending:
            self.sync()
        while self._fds:
            os.close(self._fds.popitem()[1][0])
        self.index.close()

    def _clean_tmp(self) -> None:
        """Drop temp files of writers that died (a kill -9 mid-add leaves them)."""
        for entry in os.scandir(self.tmp_dir):
            pid = entry.name.split("-")[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                os.unlink(entry.path)

    def path(self, cid: bytes) -> str:
        return f"{self.blocks_dir}/{_relpath(cidmod.multihash_of(cid))}"

    def has(self, cid: bytes) -> bool:
        return cidmod.multihash_of(cid) in self._fds or os.path.exists(self.path(cid))

    def block_file(self, cid: bytes) -> tuple[int, blockfile.Header]:
        """A cached read-only fd of the block file and its parsed header; raises BlockNotFound
        (or BlockCorrupt for a bad header).

        Owned by the store: never close the fd, and use it before the next await — another
        task may push it out of the cache (and close it) after that."""
        mh = cidmod.multihash_of(cid)
        hit = self._fds.get(mh)
        if hit is not None:
            self._fds.move_to_end(mh)
            return hit
        fd = self.open_block(cid)
        try:
            hit = (fd, blockfile.read_header(fd))
        except BaseException:
            os.close(fd)
            raise
        self._fds[mh] = hit
        if len(self._fds) > self._fd_cache:
            os.close(self._fds.popitem(last=False)[1][0])
        return hit

    def open_block(self, cid: bytes) -> int:
        """An fd for the block file; raises BlockNotFound."""
        try:
            return os.open(self.path(cid), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BlockNotFound(cidmod.to_str(cid)) from None

    def get(self, cid: bytes) -> bytes:
        inline = cidmod.identity_data(cid)
        if inline is not None:
            return inline
        fd = self.open_block(cid)
        try:
            return blockfile.read_all(fd)
        except BlockCorrupt:
            log.error("block %s is damaged on disk", cidmod.to_str(cid))
            raise
        finally:
            os.close(fd)

    def put(self, cid: bytes, data: bytes | memoryview, source: str = "local",
            private: bool = False) -> bool:
        """Store a block whose hash the caller has verified; False if it was already there.

        Safe to call from worker threads (file I/O and an atomic list append only)."""
        final = self.path(cid)
        if os.path.exists(final):
            return False
        tmp = f"{self.tmp_dir}/{os.getpid()}-{next(self._tmp_seq)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        try:
            os.writev(fd, [blockfile.encode_header(data), data])
        finally:
            os.close(fd)
        try:
            os.rename(tmp, final)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            os.rename(tmp, final)
        self._pending.append((cidmod.multihash_of(cid), len(data), source, private))
        return True

    def sync(self) -> None:
        """Make every block written so far durable, then record them in the index."""
        rows = self.take_pending()
        self.flush_files()
        if rows:
            self.index.record_blocks(rows)

    def pending(self) -> list[tuple[bytes, int, str, bool]]:
        """Blocks written but not yet recorded in the index."""
        return list(self._pending)

    def take_pending(self) -> list[tuple[bytes, int, str, bool]]:
        rows, self._pending = self._pending, []  # one assignment: no append can be lost
        return rows

    def flush_files(self) -> None:
        """syncfs() the store's filesystem: one call instead of an fsync per block.

        Touches no Python state, so it may run in a worker thread."""
        fd = os.open(self.blocks_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _libc.syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
        finally:
            os.close(fd)

    def drop(self, cid: bytes) -> None:
        self.drop_mh(cidmod.multihash_of(cid))

    def drop_mh(self, mh: bytes, forget: bool = True) -> None:
        """Delete a block; forget=False leaves the index row to a batched forget_blocks()."""
        hit = self._fds.pop(mh, None)
        if hit is not None:
            os.close(hit[0])
        try:
            os.unlink(f"{self.blocks_dir}/{_relpath(mh)}")
        except FileNotFoundError:
            pass
        if forget:
            self.index.forget_blocks([mh])

    def iter_block_files(self) -> Iterator[tuple[str, bytes]]:
        """(path, multihash) of every block file, for verify."""
        for shard in sorted(os.scandir(self.blocks_dir), key=lambda e: e.name):
            if not shard.is_dir():
                continue
            for entry in sorted(os.scandir(shard.path), key=lambda e: e.name):
                body = entry.name.upper()
                try:
                    mh = base64.b32decode(body + "=" * (-len(body) % 8))
                except ValueError:
                    continue
                yield entry.path, mh
