"""Routing strategies (the seed's Strategy pattern): how a request orders the chain's links.

ContentRouter scores every source with the seed's formula — direct peer +100, has IPFS +50,
trust × 10, bandwidth above 1 MB/s +20, minus latency (ms) / 10 — and the strategy chosen for
the request turns scores and measurements into an order, dropping links it must not use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from casfs.chain.base import ContentSource, P2PContentRequest

BLOCK = 262144


@dataclass(frozen=True)
class SourceView:
    """What a strategy may know about a link."""

    source: ContentSource
    kind: str  # "peer", "ipfs", "gateway"
    trust: float  # 0..1
    bandwidth: float  # bytes/s, measured (EWMA)
    latency_ms: float  # measured (EWMA)
    direct_peer: bool
    has_ipfs: bool
    metered: bool  # costs money or shared quota per byte (public gateways)

    @property
    def expected_seconds(self) -> float:
        return self.latency_ms / 1000 + BLOCK / max(self.bandwidth, 1.0)


def score(v: SourceView) -> float:
    """The seed's source-scoring formula."""
    s = 0.0
    if v.direct_peer:
        s += 100
    if v.has_ipfs:
        s += 50
    s += v.trust * 10
    if v.bandwidth > 1_000_000:
        s += 20
    return s - v.latency_ms / 10


class RoutingStrategy(ABC):
    name = ""

    @abstractmethod
    def order(self, views: list[SourceView], request: P2PContentRequest) -> list[SourceView]: ...


class PerformanceStrategy(RoutingStrategy):
    """Fastest expected delivery first (latency + a block at the measured bandwidth)."""

    name = "performance"

    def order(self, views: list[SourceView], request: P2PContentRequest) -> list[SourceView]:
        return sorted(views, key=lambda v: (v.expected_seconds, -score(v)))


class TrustBasedStrategy(RoutingStrategy):
    """Most trusted first; links that earned too little trust are not asked at all."""

    name = "trust"
    minimum = 0.2

    def order(self, views: list[SourceView], request: P2PContentRequest) -> list[SourceView]:
        kept = [v for v in views if v.trust >= self.minimum]
        return sorted(kept, key=lambda v: (-v.trust, -score(v)))


class PrivacyFirstStrategy(RoutingStrategy):
    """Direct peers only for private content: never an IPFS node or a gateway. Public content
    still reads, peers first."""

    name = "privacy-first"

    def order(self, views: list[SourceView], request: P2PContentRequest) -> list[SourceView]:
        if request.private:
            views = [v for v in views if v.direct_peer]
        return sorted(views, key=lambda v: (not v.direct_peer, v.kind == "gateway", -score(v)))


class CostOptimizedStrategy(RoutingStrategy):
    """Cheapest bytes first: peers (same network), then the IPFS node, metered gateways last."""

    name = "cost"

    def order(self, views: list[SourceView], request: P2PContentRequest) -> list[SourceView]:
        rank = {"peer": 0, "ipfs": 1, "gateway": 2}
        return sorted(views, key=lambda v: (v.metered, rank.get(v.kind, 3), -score(v)))


STRATEGIES: dict[str, type[RoutingStrategy]] = {
    s.name: s for s in (PerformanceStrategy, TrustBasedStrategy, PrivacyFirstStrategy,
                        CostOptimizedStrategy)}


class ContentRouter:
    def __init__(self, strategy: RoutingStrategy) -> None:
        self.strategy = strategy

    def view(self, source: ContentSource) -> SourceView:
        st = source.stats
        bandwidth = st.bytes / max(st.busy_seconds, 1e-3) if st.hits else 10e6
        return SourceView(source, source.kind, st.trust(), bandwidth,
                          st.latency_ewma * 1000, source.kind == "peer",
                          source.kind == "ipfs", source.kind == "gateway")

    def order(self, sources: list[ContentSource], request: P2PContentRequest
              ) -> list[ContentSource]:
        allowed = [s for s in sources if s.kind in request.preferred_sources]
        views = self.strategy.order([self.view(s) for s in allowed], request)
        return [v.source for v in views]
