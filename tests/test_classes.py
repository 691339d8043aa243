"""Content classes (the seed's prefer_p2p / prefer_ipfs) reorder the chain per request."""

from __future__ import annotations

import trio

from casfs import cid as cidmod
from casfs.chain import ContentSource, DiscoveryChain, P2PContentRequest
from casfs.chain.classes import LARGE, Preferences, classify, current_file, order_for

DEFAULT = ("peer", "ipfs", "gateway")
DAY = 86400.0


def test_classify() -> None:
    now = 1e9
    assert classify(True, 100, now - 10, now - 10, now) == {"private", "small", "recent"}
    assert classify(False, LARGE, None, now - 40 * DAY, now) == {"public", "large", "archived"}
    assert classify(False, 5 << 20, None, now, now) == {"public", "medium"}


def test_order_leans_by_class() -> None:
    prefs = Preferences()
    assert order_for({"private", "small"}, prefs, DEFAULT) == DEFAULT
    assert order_for({"public", "large"}, prefs, DEFAULT) == ("ipfs", "gateway", "peer")
    assert order_for({"public", "small", "recent"}, prefs, DEFAULT)[0] == "peer"
    assert order_for({"public", "small"}, prefs, ("ipfs", "peer")) == ("ipfs", "peer")


class Recorder(ContentSource):
    def __init__(self, kind: str, log: list[str]) -> None:
        super().__init__()
        self.kind = self.name = kind
        self.log = log

    async def retrieve(self, cid: bytes, request: P2PContentRequest) -> bytes:
        self.log.append(self.kind)
        return DATA


DATA = b"block"
CID = cidmod.make(cidmod.RAW, DATA)


def test_chain_asks_ipfs_first_for_a_large_file_being_read() -> None:
    asked: list[str] = []
    chain = DiscoveryChain([Recorder("peer", asked), Recorder("ipfs", asked)],
                           classifier=lambda cid, private: classify(
                               private, current_file.get()[1] if current_file.get() else None,
                               None, None))

    async def read(size: int) -> None:
        current_file.set((b"file", size))
        await chain.retrieve(CID)

    trio.run(read, LARGE)
    trio.run(read, 1000)
    assert asked == ["ipfs", "peer"]
