"""DiscoveryChain on in-memory sources: order, fallback, verification, deadlines."""

from __future__ import annotations

import functools

import pytest
import trio

from casfs import cid as cidmod
from casfs.chain import ContentSource, DiscoveryChain, P2PContentRequest
from casfs.errors import BlockNotFound, DeadlineExceeded, SourceUnavailable

DATA = b"some block"
CID = cidmod.make(cidmod.RAW, DATA)


class Fake(ContentSource):
    def __init__(self, kind: str, behaviour: str) -> None:
        super().__init__()
        self.kind = kind
        self.name = f"{kind}-{behaviour}"
        self.behaviour = behaviour
        self.calls = 0

    async def retrieve(self, cid: bytes, request: P2PContentRequest) -> bytes:
        self.calls += 1
        if self.behaviour == "good":
            return DATA
        if self.behaviour == "liar":
            return DATA + b"!"
        if self.behaviour == "silent":
            await trio.sleep_forever()
        if self.behaviour == "down":
            raise SourceUnavailable("down")
        raise BlockNotFound("no")


def retrieve(chain: DiscoveryChain, request: P2PContentRequest | None = None
             ) -> tuple[bytes, str]:
    return trio.run(functools.partial(chain.retrieve, CID, request=request))


def test_order_follows_preferences() -> None:
    ipfs, gw = Fake("ipfs", "good"), Fake("gateway", "good")
    chain = DiscoveryChain([gw, ipfs])
    assert retrieve(chain)[1] == "ipfs-good"
    req = P2PContentRequest(cidmod.to_str(CID), preferred_sources=("gateway", "ipfs"))
    assert retrieve(chain, req)[1] == "gateway-good"
    req = P2PContentRequest(cidmod.to_str(CID), preferred_sources=("ipfs",))
    chain = DiscoveryChain([Fake("gateway", "good"), Fake("ipfs", "missing")])
    with pytest.raises(BlockNotFound):
        retrieve(chain, req)


@pytest.mark.expect_warnings
def test_liar_is_passed_over_and_not_asked_again() -> None:
    liar, good = Fake("ipfs", "liar"), Fake("gateway", "good")
    chain = DiscoveryChain([liar, good])
    assert retrieve(chain) == (DATA, "gateway-good")
    assert liar.stats.corrupt == 1
    retrieve(chain)
    assert liar.calls == 1  # marked down for this block


def test_missing_everywhere_is_not_found_and_down_is_unsure() -> None:
    with pytest.raises(BlockNotFound):
        retrieve(DiscoveryChain([Fake("ipfs", "missing"), Fake("gateway", "missing")]))
    with pytest.raises(DeadlineExceeded):
        retrieve(DiscoveryChain([Fake("ipfs", "down"), Fake("gateway", "missing")]))


def test_silent_source_hits_the_deadline() -> None:
    chain = DiscoveryChain([Fake("ipfs", "silent"), Fake("gateway", "good")], ttl=0.3)

    async def go() -> float:
        t = trio.current_time()
        with pytest.raises(DeadlineExceeded):
            await chain.retrieve(CID)
        return trio.current_time() - t

    assert trio.run(go) < 1.0
