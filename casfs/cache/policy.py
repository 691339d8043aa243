"""Eviction policies (the seed's cacheStrategy): which unpinned blocks go first.

Each policy orders candidates, first = evicted first. Pinned blocks and blocks of open files
never reach a policy; the evictor filters them out before.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Candidate:
    mh: bytes
    size: int
    atime: float  # last access (or when stored, if never read)
    source: str  # where the block came from: "local", "peer <id>", "ipfs …", "gateway …"


@dataclass
class Context:
    trust: Callable[[str], float] = lambda source: 1.0  # 0 (none) … 1 (full)
    predicted: set[bytes] = field(default_factory=set)  # blocks expected to be read soon


class Policy(ABC):
    name = ""

    @abstractmethod
    def order(self, candidates: list[Candidate], ctx: Context) -> list[Candidate]: ...


class LRU(Policy):
    """Least recently used first."""

    name = "lru"

    def order(self, candidates: list[Candidate], ctx: Context) -> list[Candidate]:
        return sorted(candidates, key=lambda c: c.atime)


class TrustBased(Policy):
    """Blocks from low-trust sources first; LRU among blocks of equal trust."""

    name = "trust-based"

    def order(self, candidates: list[Candidate], ctx: Context) -> list[Candidate]:
        return sorted(candidates, key=lambda c: (round(ctx.trust(c.source), 2), c.atime))


class Predictive(Policy):
    """Keeps what access patterns say will be read again (the rest of files being read
    sequentially, files read together with recent ones); LRU for everything else."""

    name = "predictive"

    def order(self, candidates: list[Candidate], ctx: Context) -> list[Candidate]:
        return sorted(candidates, key=lambda c: (c.mh in ctx.predicted, c.atime))


POLICIES: dict[str, type[Policy]] = {p.name: p for p in (LRU, TrustBased, Predictive)}
