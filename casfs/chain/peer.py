"""PeerSource: blocks from connected casfs peers over /cas/1.0.0.

Candidates are the peers whose Bloom filter may hold the block (all peers, through a parallel
have-query, when none does). They are tried in order of expected arrival time — queue,
latency and measured bandwidth — so the blocks of one file spread over several holders by
their speed. A candidate that has not answered within a few of its usual latencies gets
company: the next candidate is asked too, the first verified block wins and the other request
is cancelled (trio's happy-eyeballs pattern). Only one holder is normally asked for a block,
so no peer's bandwidth is spent on a copy nobody uses.
"""

from __future__ import annotations

import logging
import time

import trio
from cachetools import LRUCache

from casfs import cid as cidmod
from casfs.chain.base import ContentSource, P2PContentRequest
from casfs.errors import BlockCorrupt, BlockNotFound, SourceUnavailable
from casfs.limit import TokenBucket
from casfs.p2p.client import PeerUnavailable
from casfs.p2p.config import MAX_MANY
from casfs.p2p.node import PeerNode
from casfs.p2p.peers import PeerState
from casfs.p2p.wire import Message, Msg, ProtocolError

log = logging.getLogger(__name__)
HEDGE_MIN = 0.5  # under load on 2 cores, 50 ms hedges sent ~15% duplicate bytes
HEDGE_MAX = 2.0


class PeerSource(ContentSource):
    kind = "peer"
    verifies = True
    name = "peers"

    def __init__(self, node: PeerNode, min_trust: float = 0.0) -> None:
        super().__init__()
        self.node = node
        # The trust-based strategy stops asking peers whose trust fell below this.
        self.min_trust = min_trust
        self._origin: LRUCache[bytes, str] = LRUCache(maxsize=4096)
        self.bucket = TokenBucket(node.settings.bandwidth_limit)  # fetching side of the limit

    def origin(self, cid: bytes) -> str:
        return self._origin.get(cid, self.name)

    def candidates(self, cid: bytes) -> list[PeerState]:
        mh = cidmod.multihash_of(cid)
        peers = [p for p in self.node.peers.values()
                 if cid not in p.lied_about and p.trust >= self.min_trust]
        likely = [p for p in peers if p.might_have(mh)]
        return sorted(likely, key=PeerState.expected_time)

    async def retrieve(self, cid: bytes, request: P2PContentRequest) -> bytes:
        peers = self.candidates(cid)
        if not peers:
            peers = await self._who_has(cid)
        if not peers:
            raise BlockNotFound(f"no peer has {request.content_hash}")
        return await self._race(cid, peers)

    async def _who_has(self, cid: bytes) -> list[PeerState]:
        """Ask every peer in parallel whether it has the block; holders in answer order."""
        text = cidmod.to_str(cid)
        holders: list[PeerState] = []

        async def ask(peer: PeerState) -> None:
            try:
                reply = await self.node.client.request(peer.peer_id,
                                                       Message(Msg.HAVE, {"cids": [text]}))
            except (PeerUnavailable, ProtocolError):
                return
            if reply.type == Msg.HAVE_REPLY and reply.header.get("have") == [True]:
                holders.append(peer)

        async with trio.open_nursery() as nursery:
            for peer in list(self.node.peers.values()):
                if cid not in peer.lied_about and peer.trust >= self.min_trust:
                    nursery.start_soon(ask, peer)
        return holders

    async def _race(self, cid: bytes, peers: list[PeerState]) -> bytes:
        result: list[bytes] = []
        errors: list[str] = []
        missing = 0

        async def attempt(peer: PeerState, failed: trio.Event) -> None:
            nonlocal missing
            try:
                data = await self._get(peer, cid)
            except BlockNotFound:
                missing += 1
                failed.set()
                return
            except (SourceUnavailable, BlockCorrupt) as exc:
                errors.append(str(exc))
                failed.set()
                return
            if not result:
                result.append(data)
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for peer in peers:
                failed = trio.Event()
                nursery.start_soon(attempt, peer, failed)
                hedge = min(HEDGE_MAX, max(HEDGE_MIN, 8 * peer.expected_time()))
                with trio.move_on_after(hedge):
                    await failed.wait()
        if result:
            return result[0]
        if missing == len(peers):
            raise BlockNotFound(f"none of {len(peers)} peers has {cidmod.to_str(cid)}")
        raise SourceUnavailable("; ".join(errors[:3]) or "peers did not answer")

    async def _get(self, peer: PeerState, cid: bytes) -> bytes:
        peer.inflight += 1
        started = time.monotonic()
        try:
            reply = await self.node.client.request(peer.peer_id,
                                                   Message(Msg.GET, {"cid": cidmod.to_str(cid)}))
        except (PeerUnavailable, ProtocolError) as exc:
            peer.record_failure()
            raise SourceUnavailable(str(exc)) from None
        finally:
            peer.inflight -= 1
        return await self._accept(peer, cid, reply, time.monotonic() - started)

    async def _accept(self, peer: PeerState, cid: bytes, reply: Message, seconds: float
                      ) -> bytes:
        """The block in a GET reply, verified; raises (and marks the peer) otherwise."""
        text = cidmod.to_str(cid)
        if reply.type == Msg.NOT_FOUND:
            raise BlockNotFound(text)
        if reply.type == Msg.REFUSED:
            peer.record_failure()
            raise SourceUnavailable(f"{peer.peer_id} refused: {reply.header.get('reason')}")
        if reply.type != Msg.BLOCK or not cidmod.verify(cid, reply.body):
            peer.lied_about[cid] = True
            peer.record_corrupt()
            log.warning("peer %s sent a corrupt block %s; its trust is now %.2f",
                        peer.peer_id, text, peer.trust)
            raise BlockCorrupt(f"peer {peer.peer_id} sent a corrupt {text}")
        peer.record_block(len(reply.body), seconds)
        self._origin[cid] = f"peer {peer.peer_id}"
        await self.bucket.consume(len(reply.body))
        return reply.body

    # Consecutive leaves of a sequentially read file come as one GET_MANY batch from one
    # holder; parallel batches go to different holders (least loaded first), which is how a
    # file spreads over several of them.
    supports_ranges = True

    async def retrieve_range(self, root: bytes, offset: int, leaves: list[tuple[bytes, int]],
                             request: P2PContentRequest) -> list[bytes | memoryview]:
        if len(leaves) > MAX_MANY:
            raise SourceUnavailable(f"more than {MAX_MANY} blocks in one range")
        cids = [cid for cid, _ in leaves]
        mhs = [cidmod.multihash_of(cid) for cid in cids]
        peers = [p for p in self.node.peers.values()
                 if p.trust >= self.min_trust and not any(c in p.lied_about for c in cids)
                 and p.bloom is not None and all(p.might_have(mh) for mh in mhs)]
        if not peers:
            raise SourceUnavailable("no peer is known to hold the whole range")
        size = sum(n for _, n in leaves)
        peer = min(peers, key=lambda p: p.expected_time(size))
        peer.inflight += len(cids)
        started = time.monotonic()
        try:
            replies = await self.node.client.request_many(
                peer.peer_id, Message(Msg.GET_MANY, {"cids": [cidmod.to_str(c) for c in cids]}),
                len(cids), timeout=HEDGE_MAX)  # a stalled batch falls back to hedged GETs
        except (PeerUnavailable, ProtocolError) as exc:
            peer.record_failure()
            raise SourceUnavailable(str(exc)) from None
        finally:
            peer.inflight -= len(cids)
        each = (time.monotonic() - started) / len(cids)
        return [await self._accept(peer, cid, reply, each)
                for cid, reply in zip(cids, replies, strict=True)]
