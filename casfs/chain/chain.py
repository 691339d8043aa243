"""DiscoveryChain: ask each source in turn until one returns verified bytes.

Order comes from the request's preferred_sources (the configured order by default). Each link
gets what is left of the request's deadline; a source that fails is passed over and the next
one tried. Total failure raises BlockNotFound when every source that was asked said it does not
have the block, and DeadlineExceeded when time ran out or some source could not answer (then
the block may well exist).
"""

from __future__ import annotations

import logging
import time

import trio

from casfs import cid as cidmod
from casfs.chain.base import ContentSource, P2PContentRequest
from casfs.chain.classes import Classifier, Preferences, order_for
from casfs.chain.routing import ContentRouter
from casfs.errors import BlockCorrupt, BlockNotFound, DeadlineExceeded, SourceUnavailable

log = logging.getLogger(__name__)


class DiscoveryChain:
    def __init__(self, sources: list[ContentSource], ttl: float = 30.0,
                 order: tuple[str, ...] = ("peer", "ipfs", "gateway"),
                 router: ContentRouter | None = None, requester: str = "",
                 classifier: Classifier | None = None,
                 preferences: Preferences | None = None) -> None:
        self.classifier = classifier
        self.preferences = preferences or Preferences()
        self.sources = sources
        self.ttl = ttl
        self.order = order
        self.router = router
        self.requester = requester

    def request(self, cid: bytes, private: bool = False) -> P2PContentRequest:
        order = self.order
        if self.classifier is not None:
            order = order_for(self.classifier(cid, private), self.preferences, order)
        return P2PContentRequest(cidmod.to_str(cid), self.requester, order, self.ttl, private)

    def ordered(self, request: P2PContentRequest) -> list[ContentSource]:
        if self.router is not None:
            chosen = self.router.order(self.sources, request)
        else:
            rank = {kind: i for i, kind in enumerate(request.preferred_sources)}
            chosen = sorted((s for s in self.sources if s.kind in rank),
                            key=lambda s: rank[s.kind])
        if request.private:  # whatever the strategy: private content stays among peers
            chosen = [s for s in chosen if s.kind == "peer"]
        return chosen

    async def retrieve(self, cid: bytes, private: bool = False,
                       request: P2PContentRequest | None = None) -> tuple[bytes, str]:
        request = request or self.request(cid, private)
        deadline = trio.current_time() + request.ttl
        unsure: list[str] = []
        for source in self.ordered(request):
            if cid in source.lied_about:
                continue
            if not source.usable():
                unsure.append(f"{source.name}: down")
                continue
            left = deadline - trio.current_time()
            if left <= 0:
                break
            started = time.monotonic()
            try:
                with trio.fail_after(left):
                    data = await source.retrieve(cid, request)
            except BlockNotFound:
                source.stats.misses += 1
                continue
            except trio.TooSlowError:
                source.stats.failures += 1
                source.stats.last_error = "timed out"
                unsure.append(f"{source.name}: timed out")
                break
            except BlockCorrupt as exc:
                source.lied_about[cid] = True
                source.stats.corrupt += 1
                source.stats.last_error = str(exc)
                log.warning("%s sent a corrupt block %s: %s", source.name, request.content_hash,
                            exc)
                unsure.append(f"{source.name}: corrupt")
                continue
            except SourceUnavailable as exc:
                source.stats.failures += 1
                source.stats.last_error = str(exc)
                unsure.append(f"{source.name}: {exc}")
                continue
            if not source.verifies and not cidmod.verify(cid, data):
                source.lied_about[cid] = True
                source.stats.corrupt += 1
                log.warning("%s sent a block that fails its hash: %s", source.name,
                            request.content_hash)
                unsure.append(f"{source.name}: corrupt")
                continue
            source.stats.record_hit(len(data), time.monotonic() - started)
            return data, source.origin(cid)
        if unsure:
            raise DeadlineExceeded(f"{request.content_hash}: " + "; ".join(unsure))
        raise BlockNotFound(request.content_hash)

    @property
    def supports_ranges(self) -> bool:
        return any(s.supports_ranges for s in self.sources)

    async def retrieve_range(self, root: bytes, offset: int, leaves: list[tuple[bytes, int]]
                             ) -> tuple[list[bytes | memoryview], str]:
        """Leaf contents of a file range from the first range-capable source that has them.

        Only an optimisation for sequential reads: on any failure the caller fetches the
        leaves one block at a time through retrieve()."""
        request = self.request(root)
        for source in self.ordered(request):
            if not source.supports_ranges or not source.usable():
                continue
            started = time.monotonic()
            try:
                with trio.fail_after(request.ttl):
                    datas = await source.retrieve_range(root, offset, leaves, request)
            except (BlockNotFound, SourceUnavailable, trio.TooSlowError):
                continue
            except BlockCorrupt as exc:
                source.stats.corrupt += 1
                log.warning("%s sent a corrupt range of %s: %s", source.name,
                            request.content_hash, exc)
                continue
            source.stats.record_hit(sum(map(len, datas)), time.monotonic() - started)
            return datas, source.origin(leaves[0][0])
        raise SourceUnavailable("no source could send the range")

    def stats(self) -> dict[str, dict[str, object]]:
        return {s.name: s.stats.as_dict() for s in self.sources}

    async def aclose(self) -> None:
        for source in self.sources:
            await source.aclose()
