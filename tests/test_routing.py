"""Routing strategies order (and filter) the chain's links as they promise."""

from __future__ import annotations

from casfs.chain import ContentSource, P2PContentRequest
from casfs.chain.routing import (
    ContentRouter,
    CostOptimizedStrategy,
    PerformanceStrategy,
    PrivacyFirstStrategy,
    TrustBasedStrategy,
    score,
)


class Src(ContentSource):
    def __init__(self, kind: str, name: str, hits: int = 0, corrupt: int = 0,
                 latency: float = 0.01, bytes_: int = 0, busy: float = 1.0) -> None:
        super().__init__()
        self.kind, self.name = kind, name
        self.stats.hits, self.stats.corrupt = hits, corrupt
        self.stats.latency_ewma, self.stats.bytes, self.stats.busy_seconds = latency, bytes_, busy

    async def retrieve(self, cid: bytes, request: P2PContentRequest) -> bytes:
        raise NotImplementedError


REQ = P2PContentRequest("bafy")
PRIVATE = P2PContentRequest("bafy", private=True)


def names(router: ContentRouter, sources: list[ContentSource],
          request: P2PContentRequest = REQ) -> list[str]:
    return [s.name for s in router.order(sources, request)]


def test_seed_formula() -> None:
    router = ContentRouter(PerformanceStrategy())
    peer = router.view(Src("peer", "p", hits=10, latency=0.002, bytes_=50_000_000))
    ipfs = router.view(Src("ipfs", "i", hits=10, latency=0.002, bytes_=50_000_000))
    # direct peer +100, trust*10, >1 MB/s +20, -latency/10
    assert round(score(peer), 1) == round(100 + peer.trust * 10 + 20 - 0.2, 1)
    assert round(score(ipfs), 1) == round(50 + ipfs.trust * 10 + 20 - 0.2, 1)


def test_performance_prefers_the_fast_link() -> None:
    slow = Src("peer", "slow", hits=10, latency=0.200, bytes_=1_000_000, busy=1.0)
    fast = Src("peer", "fast", hits=10, latency=0.002, bytes_=100_000_000, busy=1.0)
    assert names(ContentRouter(PerformanceStrategy()), [slow, fast]) == ["fast", "slow"]


def test_trust_based_drops_liars() -> None:
    liar = Src("peer", "liar", hits=1, corrupt=5)
    honest = Src("peer", "honest", hits=50)
    gw = Src("gateway", "gw", hits=5)
    assert names(ContentRouter(TrustBasedStrategy()), [liar, gw, honest]) == ["honest", "gw"]


def test_privacy_first_keeps_private_content_among_peers() -> None:
    sources = [Src("gateway", "gw"), Src("ipfs", "ipfs"), Src("peer", "peer")]
    router = ContentRouter(PrivacyFirstStrategy())
    assert names(router, sources, PRIVATE) == ["peer"]
    assert names(router, sources)[0] == "peer" and names(router, sources)[-1] == "gw"


def test_cost_puts_metered_gateways_last() -> None:
    sources = [Src("gateway", "gw", hits=99, latency=0.001, bytes_=10**9),
               Src("ipfs", "ipfs"), Src("peer", "peer")]
    assert names(ContentRouter(CostOptimizedStrategy()), sources) == ["peer", "ipfs", "gw"]


def test_preferred_sources_of_the_request_filter_the_chain() -> None:
    sources = [Src("gateway", "gw"), Src("peer", "peer")]
    req = P2PContentRequest("bafy", preferred_sources=("gateway",))
    assert names(ContentRouter(PerformanceStrategy()), sources, req) == ["gw"]
