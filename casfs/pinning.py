"""Pins: content kept whole and never evicted.

Pinning walks the DAG level by level, fetching every missing block (in parallel, bounded) and
recording each block under the pin as it goes, so eviction cannot take a block the pin has
already reached. A pin that cannot finish (sources down) retries with backoff until it does or
is unpinned; pins that were fetching when the mount stopped resume at the next mount.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from casfs import cid as cidmod
from casfs.dag import Dag
from casfs.fetcher import BlockFetcher
from casfs.store import Store

log = logging.getLogger(__name__)
RETRY_FIRST = 2.0
RETRY_MAX = 60.0


@dataclass
class Progress:
    done: int = 0
    known: int = 1
    complete: bool = False

    def text(self) -> str:
        if self.complete:
            return f"{self.done}/{self.done} blocks (100%)"
        return f"{self.done}/{self.known}+ blocks ({100 * self.done / max(self.known, 1):.1f}%)"


class Pinner:
    def __init__(self, store: Store, dag: Dag, fetcher: BlockFetcher, nursery: trio.Nursery,
                 parallel: int = 16) -> None:
        self.store = store
        self.dag = dag
        self.fetcher = fetcher
        self.nursery = nursery
        self._limiter = trio.CapacityLimiter(parallel)
        self._running: dict[bytes, trio.CancelScope] = {}
        self.progress: dict[bytes, Progress] = {}

    def resume(self) -> None:
        for cid, complete, _ in self.store.index.pins():
            if not complete:
                self._start(cid)

    def pin(self, cid: bytes, reason: str = "user") -> bool:
        """Pin cid (recursively); False if it was pinned already."""
        added = self.store.index.add_pin(cid, reason)
        if added:
            log.info("pinning %s (%s)", cidmod.to_str(cid), reason)
            self._start(cid)
        return added

    def unpin(self, cid: bytes) -> bool:
        scope = self._running.pop(cid, None)
        if scope is not None:
            scope.cancel()
        self.progress.pop(cid, None)
        removed = self.store.index.remove_pin(cid)
        if removed:
            log.info("unpinned %s", cidmod.to_str(cid))
        return removed

    def state(self, cid: bytes) -> Progress | None:
        complete = self.store.index.pin_state(cid)
        if complete is None:
            return None
        if complete:
            return self.progress.get(cid) or Progress(complete=True)
        return self.progress.setdefault(cid, Progress())

    def _start(self, cid: bytes) -> None:
        if cid not in self._running:
            self.nursery.start_soon(self._run, cid)

    async def _run(self, root: bytes) -> None:
        with trio.CancelScope() as scope:
            self._running[root] = scope
            delay = RETRY_FIRST
            while True:
                try:
                    await self._walk(root)
                    break
                except Exception as exc:  # noqa: BLE001 — sources down: try again later
                    log.warning("pin of %s is waiting for blocks (%s); retrying in %.0f s",
                                cidmod.to_str(root), exc, delay)
                    await trio.sleep(delay)
                    delay = min(RETRY_MAX, delay * 2)
            self.store.index.set_pin_complete(root)
            log.info("pin of %s is complete", cidmod.to_str(root))
        if self._running.get(root) is scope:
            del self._running[root]

    async def _walk(self, root: bytes) -> None:
        progress = self.progress[root] = Progress()
        level = [root]
        while level:
            async with trio.open_nursery() as nursery:
                for cid in level:
                    nursery.start_soon(self._fetch, cid, progress)
            self.store.index.protect(root, [cidmod.multihash_of(c) for c in level])
            children: list[bytes] = []
            for cid in level:
                if cidmod.codec_of(cid) == cidmod.DAG_PB:
                    children.extend(link.cid for link in (await self.dag.entry(cid)).node.links)
            progress.known = progress.done + len(children)
            level = children
        progress.complete = True

    async def _fetch(self, cid: bytes, progress: Progress) -> None:
        if not self.store.has(cid):
            async with self._limiter:
                await self.fetcher.ensure_local(cid)
        progress.done += 1
