"""`casfs verify`: re-hash every block in the store, and check that every root is complete."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field

from multiformats import multihash

from casfs import cid as cidmod
from casfs.errors import BlockCorrupt, BlockNotFound, UnsupportedContent
from casfs.store import Store, blockfile
from casfs.unixfs import decode

log = logging.getLogger(__name__)


@dataclass
class Report:
    blocks: int = 0
    bad: list[str] = field(default_factory=list)  # block file paths
    incomplete: list[str] = field(default_factory=list)  # root CIDs missing blocks

    @property
    def clean(self) -> bool:
        return not self.bad and not self.incomplete


def _block_ok(path: str, mh: bytes) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = blockfile.read_all(fd)
    except BlockCorrupt:
        return False
    finally:
        os.close(fd)
    if mh[:2] == b"\x12\x20":
        return hashlib.sha256(data).digest() == mh[2:]
    try:
        return multihash.digest(data, multihash.unwrap_raw(mh)[0]) == mh
    except (KeyError, ValueError):
        return False


def _missing_under(store: Store, root: bytes, limit: int = 1_000_000) -> bool:
    """True if any block of root's DAG is not in the store (walks at most limit blocks)."""
    stack = [root]
    seen = 0
    while stack and seen < limit:
        cid = stack.pop()
        seen += 1
        if cidmod.codec_of(cid) == cidmod.RAW:
            if not store.has(cid):
                return True
            continue
        try:
            stack.extend(link.cid for link in decode(cid, store.get(cid)).links)
        except (BlockNotFound, BlockCorrupt):
            return True
        except UnsupportedContent:
            continue
    return False


def verify(store: Store, repair: bool = False) -> Report:
    report = Report()
    for path, mh in store.iter_block_files():
        report.blocks += 1
        if not _block_ok(path, mh):
            report.bad.append(path)
            log.warning("bad block file %s", path)
            if repair:
                os.unlink(path)
                store.index.forget_blocks([mh])
    for row in store.index.roots():
        if _missing_under(store, row.cid):
            report.incomplete.append(cidmod.to_str(row.cid))
    return report
