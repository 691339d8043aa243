"""The discovery chain's vocabulary: requests, sources and their measured behaviour."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from cachetools import LRUCache

from casfs.errors import SourceUnavailable

PREFERRED = ("peer", "ipfs", "gateway")


@dataclass(frozen=True, slots=True)
class P2PContentRequest:
    """What one read asks of the chain (the seed's P2PContentRequest)."""

    content_hash: str  # the CID, text form
    requester_id: str = ""  # did:key of this node; set once the node has an identity
    preferred_sources: tuple[str, ...] = PREFERRED
    ttl: float = 30.0  # seconds the requester will wait in all
    private: bool = False  # private content never leaves for IPFS or a gateway

    @property
    def deadline(self) -> float:
        return self.ttl


@dataclass(slots=True)
class SourceStats:
    hits: int = 0
    misses: int = 0
    failures: int = 0  # down, timed out, refused
    corrupt: int = 0
    bytes: int = 0
    latency_ewma: float = 0.0  # seconds
    busy_seconds: float = 0.0  # time spent delivering hits, for a bandwidth estimate
    last_error: str = ""
    down_until: float = 0.0  # monotonic; skip the source until then
    prior_trust: float = 0.5  # trust earned in earlier mounts (persisted in the index)
    since: float = field(default_factory=time.time)

    def record_hit(self, nbytes: int, seconds: float) -> None:
        self.hits += 1
        self.bytes += nbytes
        self.busy_seconds += seconds
        alpha = 0.2
        self.latency_ewma = seconds if self.hits == 1 else \
            (1 - alpha) * self.latency_ewma + alpha * seconds

    def trust(self) -> float:
        """Raised by verified blocks, lowered by corrupt ones (most), timeouts and refusals;
        starts from what earlier mounts learned, weighted as ten answers."""
        good = self.hits + 10 * self.prior_trust
        bad = self.corrupt * 5 + self.failures + 10 * (1 - self.prior_trust)
        return good / (good + bad)

    def as_dict(self) -> dict[str, object]:
        return {"hits": self.hits, "misses": self.misses, "failures": self.failures,
                "corrupt": self.corrupt, "bytes": self.bytes,
                "mean_latency_ms": round(self.latency_ewma * 1000, 2),
                "down": self.down_until > time.monotonic(), "last_error": self.last_error,
                "trust": round(self.trust(), 3)}


class ContentSource(ABC):
    """One link of the chain. retrieve() returns verified block bytes or raises:
    BlockNotFound (the source answered: it does not have it), SourceUnavailable (it could not
    be asked), BlockCorrupt (it answered with bytes that fail verification)."""

    kind: str = "local"  # "local", "peer", "ipfs" or "gateway": what preferred_sources names
    name: str = "local"
    # True for sources that check every block against its CID themselves (to know whom to
    # blame); the chain then does not hash it a second time.
    verifies: bool = False

    def __init__(self) -> None:
        self.stats = SourceStats()
        # CIDs this source sent bad bytes for: it is not asked for them again.
        self.lied_about: LRUCache[bytes, bool] = LRUCache(maxsize=65536)

    @abstractmethod
    async def retrieve(self, cid: bytes, request: P2PContentRequest) -> bytes: ...

    # Sources that can send a byte range of a file in one request (leaf-verified) say so.
    supports_ranges = False

    async def retrieve_range(self, root: bytes, offset: int, leaves: list[tuple[bytes, int]],
                             request: P2PContentRequest) -> list[bytes | memoryview]:
        """The contents of consecutive raw leaves [(cid, size), ...] starting at file offset
        `offset` of root, each verified against its CID; raises like retrieve()."""
        raise SourceUnavailable(f"{self.name} cannot send ranges")

    def origin(self, cid: bytes) -> str:
        """Where this source got cid from, for provenance and trust (a peer source names the
        peer)."""
        return self.name

    def usable(self) -> bool:
        return self.stats.down_until <= time.monotonic()

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        pass
