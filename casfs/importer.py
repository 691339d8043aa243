"""`casfs add`: files and directories into the store as UnixFS DAGs, as `ipfs add` builds them.

Blocks go to the store as they are made; the index rows that make content visible are written
only after `store.sync()`, so a crash at any moment leaves either nothing or everything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from casfs import cid as cidmod
from casfs.store import Store
from casfs.unixfs import FileBuilder, Kind, Link, encode_directory
from casfs.unixfs.node import encode_pbnode, encode_unixfs

log = logging.getLogger(__name__)
READ_SIZE = 1 << 20

Progress = Callable[[int], None]


@dataclass(slots=True)
class Added:
    cid: bytes
    kind: Kind
    size: int  # content bytes (files) or total bytes below (directories)
    tsize: int  # bytes of the whole DAG, as dag-pb links count them


@dataclass
class Importer:
    store: Store
    hidden: bool = False
    private: bool = False
    progress: Progress = lambda n: None
    _rows: list[tuple[bytes, int, int, bytes | None, bool]] = field(default_factory=list)
    _blocks: list[bytes] = field(default_factory=list)

    def add(self, path: Path) -> Added:
        """Add one file or directory tree, commit it as a root and pin it.

        Pinned like `ipfs add` pins: what was added here may be the only copy anywhere, so
        the quota's eviction must never take it."""
        self._blocks: list[bytes] = []
        added = self._add_any(path)
        self.store.sync()
        self._rows.append((added.cid, int(added.kind), added.size, None, True))
        self.store.index.record_content(self._rows)
        self._rows.clear()
        index = self.store.index
        if self.private:
            index.set_private(added.cid, int(added.kind), added.size, True)
            index.mark_blocks_private(self._blocks, True)
        if index.add_pin(added.cid, reason="add") or index.pin_state(added.cid) is False:
            index.protect(added.cid, self._blocks)
            index.set_pin_complete(added.cid)
        return added

    def _put(self, cid: bytes, data: bytes) -> None:
        self._blocks.append(cidmod.multihash_of(cid))
        self.store.put(cid, data)

    def _add_any(self, path: Path) -> Added:
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            return self._add_dir(path)
        if stat.S_ISLNK(st.st_mode):
            return self._add_symlink(path)
        if stat.S_ISREG(st.st_mode):
            return self._add_file(path)
        raise OSError(f"{path}: not a regular file, directory or symlink")

    def _add_file(self, path: Path) -> Added:
        builder = FileBuilder(self._put)
        sha = hashlib.sha256()
        with open(path, "rb", buffering=0) as f:
            buf = bytearray(READ_SIZE)
            view = memoryview(buf)
            while n := f.readinto(buf):
                chunk = view[:n]
                sha.update(chunk)
                builder.write(chunk)
                self.progress(n)
        root, size, tsize = builder.finish()
        self._rows.append((root, int(Kind.FILE), size, sha.digest(), False))
        return Added(root, Kind.FILE, size, tsize)

    def _add_symlink(self, path: Path) -> Added:
        block = encode_pbnode([], encode_unixfs(Kind.SYMLINK, os.readlink(path).encode()))
        cid = cidmod.make(cidmod.DAG_PB, block)
        self._put(cid, block)
        return Added(cid, Kind.SYMLINK, 0, len(block))

    def _add_dir(self, path: Path) -> Added:
        links: list[Link] = []
        size = 0
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.name.startswith(".") and not self.hidden:
                continue
            child = self._add_any(Path(entry.path))
            links.append(Link(child.cid, entry.name, child.tsize))
            size += child.size
        block = encode_directory(links)
        cid = cidmod.make(cidmod.DAG_PB, block)
        self._put(cid, block)
        self._rows.append((cid, int(Kind.DIRECTORY), size, None, False))
        return Added(cid, Kind.DIRECTORY, size, len(block) + sum(link.tsize for link in links))


def total_bytes(paths: list[Path], hidden: bool) -> int:
    """Bytes that adding paths will read, for the progress bar."""
    total = 0
    for path in paths:
        if path.is_dir():
            for top, dirs, files in os.walk(path):
                if not hidden:
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
                    files = [f for f in files if not f.startswith(".")]
                for name in files:
                    try:
                        total += os.lstat(os.path.join(top, name)).st_size
                    except OSError:
                        pass
        elif path.exists():
            total += path.stat().st_size
    return total
