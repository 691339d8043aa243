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
        text = cidmod.to_str(cid)
        peer.inflight += 1
        started = time.monotonic()
        try:
            reply = await self.node.client.request(peer.peer_id, Message(Msg.GET, {"cid": text}))
        except (PeerUnavailable, ProtocolError) as exc:
            peer.record_failure()
            raise SourceUnavailable(str(exc)) from None
        finally:
            peer.inflight -= 1
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
        peer.record_block(len(reply.body), time.monotonic() - started)
        self._origin[cid] = f"peer {peer.peer_id}"
        await self.bucket.consume(len(reply.body))
        return reply.body
