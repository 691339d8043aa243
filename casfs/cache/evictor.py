"""The evictor: keeps the store under its quota without stalling readers.

It runs in the mount's housekeeping, only when the store is over quota, and brings it down to
90% of the quota (hysteresis, so it does not run on every new block). Pinned blocks and blocks
of files open right now are never candidates. Work is done in small batches with a checkpoint
between them, so a reader waits at most one batch (the worst stall is measured and reported).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import trio

from casfs import cid as cidmod
from casfs.cache.access import AccessModel
from casfs.cache.policy import Candidate, Context, Policy
from casfs.dag import Dag
from casfs.store import Store
from casfs.store.db import evictable

log = logging.getLogger(__name__)
BATCH = 32
LOW_WATER = 0.9


@dataclass
class EvictionStats:
    runs: int = 0
    evicted_blocks: int = 0
    evicted_bytes: int = 0
    worst_stall_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"runs": self.runs, "evicted_blocks": self.evicted_blocks,
                "evicted_bytes": self.evicted_bytes,
                "worst_stall_ms": round(self.worst_stall_ms, 2)}


class Evictor:
    def __init__(self, store: Store, dag: Dag, policy: Policy, quota: int,
                 open_files: Callable[[], Iterable[bytes]], access: AccessModel,
                 trust: Callable[[str], float]) -> None:
        self.store = store
        self.dag = dag
        self.policy = policy
        self.quota = quota
        self.open_files = open_files
        self.access = access
        self.trust = trust
        self.stats = EvictionStats()
        self._over = False

    async def _blocks_under(self, cid: bytes, start: int = 0) -> set[bytes]:
        """Multihashes of the local blocks of a file or directory (from offset start)."""
        out: set[bytes] = set()
        stack = [cid]
        while stack and len(out) < 4_000_000:
            c = stack.pop()
            out.add(cidmod.multihash_of(c))
            if cidmod.codec_of(c) == cidmod.DAG_PB and self.store.has(c):
                entry = await self.dag.entry(c)
                stack.extend(link.cid for link in entry.node.links)
        if start:
            leaves = await self.dag.raw_leaves(cid, start, 1 << 62)
            keep = {cidmod.multihash_of(leaf) for leaf, _, _ in leaves or []}
            out = {mh for mh in out if mh in keep}
        return out

    def _ordered(self, protected: set[bytes], ctx: Context) -> list[Candidate]:
        rows = evictable(self.store.index.path)
        return self.policy.order([Candidate(*r) for r in rows if r[0] not in protected], ctx)

    async def enforce(self) -> None:
        if not self.quota:
            return
        total = self.store.index.total_bytes()
        if total <= self.quota:
            return
        # These walks touch only local, mostly cached nodes and never yield: they are one
        # stall for readers, so they count in the worst stall.
        started = time.perf_counter()
        protected: set[bytes] = set()
        for cid in list(self.open_files()):
            protected |= await self._blocks_under(cid)
        ctx = Context(trust=self.trust)
        if self.policy.name == "predictive":
            for cid, offset in self.access.predicted_files():
                ctx.predicted |= await self._blocks_under(cid, offset)
        self._stall(started)
        # Listing and sorting every unpinned block may take long on a big store: in a worker
        # thread, with its own SQLite connection (WAL lets it read beside the mount's).
        ordered = await trio.to_thread.run_sync(self._ordered, protected, ctx)
        evicted_before = self.stats.evicted_blocks
        target = int(self.quota * LOW_WATER)
        for i in range(0, len(ordered), BATCH):
            if total <= target:
                break
            started = time.perf_counter()
            batch = []
            for cand in ordered[i : i + BATCH]:
                if total <= target:
                    break
                self.store.drop_mh(cand.mh, forget=False)
                batch.append(cand.mh)
                total -= cand.size
                self.stats.evicted_blocks += 1
                self.stats.evicted_bytes += cand.size
            self.store.index.forget_blocks(batch)
            self._stall(started)
            await trio.sleep(0)
        if evicted := self.stats.evicted_blocks - evicted_before:
            self.stats.runs += 1
            log.debug("evicted %d blocks", evicted)
        over = total > self.quota
        if over and not self._over:  # said once, not every second while it lasts
            log.info("store stays over its quota (%d > %d bytes): the rest is pinned or open",
                     total, self.quota)
        self._over = over

    def _stall(self, started: float) -> None:
        self.stats.worst_stall_ms = max(self.stats.worst_stall_ms,
                                        (time.perf_counter() - started) * 1000)
