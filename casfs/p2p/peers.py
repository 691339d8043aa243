"""What a node knows about each connected peer: capabilities, holdings, speed, trust."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache

from casfs.p2p.bloom import Bloom


@dataclass
class PeerState:
    peer_id: str
    did: str = ""
    caps: dict[str, Any] = field(default_factory=dict)
    bloom: Bloom | None = None
    announced: LRUCache[str, float] = field(default_factory=lambda: LRUCache(maxsize=1024))
    inflight: int = 0
    latency: float = 0.01  # seconds per request, EWMA
    bandwidth: float = 50e6  # bytes/s while sending a block, EWMA
    trust: float = 0.5  # 0..1: up with verified blocks, down with corrupt ones and timeouts
    blocks: int = 0
    bytes: int = 0
    corrupt: int = 0
    failures: int = 0
    connected_at: float = field(default_factory=time.time)
    lied_about: LRUCache[bytes, bool] = field(default_factory=lambda: LRUCache(maxsize=65536))

    def might_have(self, mh: bytes) -> bool:
        return self.bloom is None or mh in self.bloom

    def expected_time(self, size: int = 262144) -> float:
        """When a block asked of this peer now would arrive: queue ahead, latency, transfer."""
        return (self.inflight + 1) * (self.latency + size / max(self.bandwidth, 1.0))

    def record_block(self, nbytes: int, seconds: float) -> None:
        self.blocks += 1
        self.bytes += nbytes
        self.latency = 0.8 * self.latency + 0.2 * seconds
        if seconds > 0:
            self.bandwidth = 0.8 * self.bandwidth + 0.2 * (nbytes / seconds)
        self.trust = min(1.0, self.trust + 0.01)

    def record_corrupt(self) -> None:
        self.corrupt += 1
        self.trust = max(0.0, self.trust - 0.2)

    def record_failure(self) -> None:
        self.failures += 1
        self.trust = max(0.0, self.trust - 0.02)
        self.latency = min(10.0, self.latency * 2)

    def as_dict(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "did": self.did, "trust": round(self.trust, 3),
                "blocks": self.blocks, "bytes": self.bytes, "corrupt": self.corrupt,
                "failures": self.failures, "latency_ms": round(self.latency * 1000, 2),
                "bandwidth_MBps": round(self.bandwidth / 1e6, 1),
                "ipfs": self.caps.get("ipfs", {}), "announced": list(self.announced)}
