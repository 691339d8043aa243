"""user.cas.* extended attributes: facts about content, and pins set with setfattr.

Kept out of fs.py, which only maps FUSE calls; errors here are casfs exceptions or the
XattrError below, which fs.py turns into errno values.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from casfs import cid as cidmod
from casfs.pinning import Pinner
from casfs.tree import Tree
from casfs.unixfs import Kind

if TYPE_CHECKING:
    from casfs.inodes import Inode
    from casfs.p2p.node import PeerNode

PREFIX = "user.cas."
READ_ONLY = ("cid", "size", "type", "source", "sha256", "local", "replicas", "pin_progress")
TRUE = {b"1", b"true", b"yes", b"on"}
FALSE = {b"0", b"false", b"no", b"off"}


class XattrError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(errno.errorcode.get(code, str(code)))
        self.errno = code


class Xattrs:
    def __init__(self, tree: Tree, pinner: Pinner | None = None,
                 peers: PeerNode | None = None) -> None:
        self.tree = tree
        self.pinner = pinner
        self.peers = peers

    def names(self, node: Inode) -> list[str]:
        names = ["cid", "size", "type", "source", "local", "replicas", "pinned", "visibility"]
        if node.kind == Kind.FILE:
            names.append("sha256")
        if self.pinner is not None and self.pinner.state(node.cid) is not None:
            names.append("pin_progress")
        return [PREFIX + n for n in names]

    async def get(self, node: Inode, key: str) -> bytes:
        if key == "cid":
            return cidmod.to_str(node.cid).encode()
        if key == "size":
            return str(node.size).encode()
        if key == "type":
            return node.kind.name.lower().encode()
        if key == "source":
            return (await self.tree.sources(node.cid, node.size)).encode()
        if key == "sha256" and node.kind == Kind.FILE:
            return (await self.tree.sha256(node.cid, node.size)).hex().encode()
        if key == "pinned":
            pinned = self.tree.store.index.pin_state(node.cid) is not None
            return b"1" if pinned else b"0"
        if key == "pin_progress" and self.pinner is not None:
            state = self.pinner.state(node.cid)
            if state is not None:
                return state.text().encode()
        if key == "local":
            have, total = await self.tree.local_blocks(node.cid, node.size)
            return f"{have / max(total, 1):.3f}".encode()
        if key == "replicas":
            return str(self.replicas(node.cid)).encode()
        if key == "visibility":
            private = self.tree.store.index.is_private(node.cid)
            return b"private" if private else b"public"
        raise XattrError(errno.ENODATA)

    def replicas(self, cid: bytes) -> int:
        """Copies known: this node's if pinned, plus peers that announced or index it."""
        mine = int(self.tree.store.index.pin_state(cid) is not None or self.tree.store.has(cid))
        if self.peers is None:
            return mine
        text = cidmod.to_str(cid)
        mh = cidmod.multihash_of(cid)
        held = sum(1 for p in self.peers.peers.values()
                   if text in p.announced or (p.bloom is not None and mh in p.bloom))
        return mine + held

    def set(self, node: Inode, key: str, value: bytes) -> None:
        if key == "pinned":
            self._set_pinned(node, value.strip().lower())
            return
        if key == "visibility":
            self._set_visibility(node, value.strip().lower())
            return
        if key in READ_ONLY:
            raise XattrError(errno.EPERM)
        raise XattrError(errno.ENODATA)

    def remove(self, node: Inode, key: str) -> None:
        if key == "pinned":
            self._set_pinned(node, b"0")
            return
        raise XattrError(errno.EPERM if key in READ_ONLY else errno.ENODATA)

    def _set_visibility(self, node: Inode, value: bytes) -> None:
        if value not in (b"private", b"public"):
            raise XattrError(errno.EINVAL)
        private = value == b"private"
        index = self.tree.store.index
        index.set_private(node.cid, int(node.kind), node.size, private)
        fetcher = self.tree.dag.fetcher
        if private:
            fetcher.private.add(node.cid)
        else:
            fetcher.private.discard(node.cid)
        # Blocks already here change class too (what is fetched later is marked as it comes).
        index.mark_blocks_private(self.tree.local_mhs(node.cid), private)

    def _set_pinned(self, node: Inode, value: bytes) -> None:
        if self.pinner is None:
            raise XattrError(errno.ENOTSUP)
        if value in TRUE:
            self.pinner.pin(node.cid)
        elif value in FALSE:
            self.pinner.unpin(node.cid)
        else:
            raise XattrError(errno.EINVAL)
