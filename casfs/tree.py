"""Names to content: what `/mnt/cas/<name>` and `<dir>/<name>` mean, and facts about content."""

from __future__ import annotations

import hashlib
import logging

from casfs import cid as cidmod
from casfs.dag import Dag, Stat
from casfs.errors import BadName, BlockNotFound, CasfsError
from casfs.reader import Reader
from casfs.store import ContentRow, Store
from casfs.unixfs import Kind, decode

log = logging.getLogger(__name__)
HASH_CHUNK = 1 << 20


class Tree:
    def __init__(self, store: Store, dag: Dag, reader: Reader) -> None:
        self.store = store
        self.dag = dag
        self.reader = reader

    def parse_root_name(self, name: str) -> tuple[bytes | None, bytes | None]:
        """(cid, None) for a CID, (None, digest) for a sha256; BadName for anything else.

        Costs no lookup of any kind, so garbage names fail at once.
        """
        cid = cidmod.parse(name)
        if cid is not None:
            return cid, None
        digest = cidmod.parse_sha256(name)
        if digest is not None:
            return None, digest
        raise BadName(name)

    async def resolve_root_name(self, name: str) -> bytes:
        cid, digest = self.parse_root_name(name)
        if cid is not None:
            return cid
        assert digest is not None
        found = self.store.index.by_sha256(digest)
        if found is not None:
            return found
        # A file of one chunk is one raw block whose multihash is the file's sha256.
        raw = cidmod.raw_from_sha256(digest)
        if self.store.has(raw):
            return raw
        raise BlockNotFound(name)

    async def stat(self, cid: bytes) -> Stat:
        row = self.store.index.content(cid)  # one query: first stats of new names are hot
        if row is not None and row.private:
            self.dag.fetcher.private.add(cid)
        if row is not None:
            return Stat(Kind(row.kind), row.size if row.kind != Kind.DIRECTORY else 0)
        st = await self.dag.stat(cid)
        return Stat(st.kind, 0) if st.kind == Kind.DIRECTORY else st

    async def child(self, cid: bytes, name: str) -> bytes:
        found = await self.dag.child(cid, name)
        if found is None:
            raise BlockNotFound(f"{cidmod.to_str(cid)}/{name}")
        return found

    async def children(self, cid: bytes) -> list[tuple[str, bytes]]:
        entry = await self.dag.entry(cid)
        return [(link.name, link.cid) for link in entry.node.links]

    def roots(self) -> list[ContentRow]:
        return self.store.index.roots()

    async def readlink(self, cid: bytes) -> bytes:
        entry = await self.dag.entry(cid)
        block = await self.dag.fetcher.get(cid)
        node = entry.node
        return bytes(block[node.data_offset : node.data_offset + node.data_length])

    async def sources(self, cid: bytes, size: int) -> str:
        """Where the blocks of this content came from: "local", or "name: count, ..."."""
        st = await self.stat(cid)
        if st.kind == Kind.FILE:
            blocks = {b for b, _, _ in await self.dag.spans(cid, 0, size)} | {cid}
        else:
            blocks = {cid}
        mhs = {cidmod.multihash_of(b) for b in blocks}
        counts = self.store.index.sources(list(mhs))
        for mh, _, source, _ in self.store.pending():
            if mh in mhs:
                counts[source] = counts.get(source, 0) + 1
        return ", ".join(f"{s}: {n}" for s, n in sorted(counts.items())) or "unknown"

    def local_mhs(self, cid: bytes, limit: int = 10_000_000) -> list[bytes]:
        """Multihashes of the blocks under cid that are here, walking local nodes only."""
        out: list[bytes] = []
        stack = [cid]
        while stack and len(out) < limit:
            c = stack.pop()
            if not self.store.has(c):
                continue
            out.append(cidmod.multihash_of(c))
            if cidmod.codec_of(c) == cidmod.DAG_PB:
                try:
                    stack.extend(link.cid for link in decode(c, self.store.get(c)).links)
                except CasfsError:
                    continue
        return out

    async def local_blocks(self, cid: bytes, size: int) -> tuple[int, int]:
        """(blocks held, blocks known) under cid, walking only nodes already local."""
        have = total = 0
        stack = [cid]
        while stack and total < 10_000_000:
            c = stack.pop()
            total += 1
            if not self.store.has(c):
                continue
            have += 1
            if cidmod.codec_of(c) == cidmod.DAG_PB:
                stack.extend(link.cid for link in (await self.dag.entry(c)).node.links)
        return have, total

    async def sha256(self, cid: bytes, size: int) -> bytes:
        """sha256 of a file's whole content: recorded at add, else computed once and recorded."""
        row = self.store.index.content(cid)
        if row is not None and row.sha256 is not None:
            return row.sha256
        h = hashlib.sha256()
        for off in range(0, size, HASH_CHUNK):
            h.update(await self.reader.read(cid, off, min(HASH_CHUNK, size - off)))
        digest = h.digest()
        if row is None:
            self.store.index.record_content([(cid, int(Kind.FILE), size, digest, False)])
        else:
            self.store.index.set_sha256(cid, digest)
        return digest
