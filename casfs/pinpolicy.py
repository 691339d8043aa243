"""The seed's pinning policy, run by the mount's housekeeping:

- auto-pin what peers trusted at least `auto_pin_trust_threshold` announce;
- pin files read within `recent_access_window` (and unpin them when it has passed);
- collaborative pinning: for each of our pins keep at least `min_peers` replicas (ours counts
  as one) on peers trusted at least `trust_required`, asking peers to pin it over /cas/1.0.0.
  Peers may refuse; a replica that disappears (peer gone) is replaced by asking another.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from casfs import cid as cidmod
from casfs.cache.access import AccessModel
from casfs.config import Config
from casfs.pinning import Pinner

if TYPE_CHECKING:
    from casfs.p2p.node import PeerNode

log = logging.getLogger(__name__)
ASK_EVERY = 5.0  # seconds between collaborative rounds


class PinPolicy:
    def __init__(self, cfg: Config, pinner: Pinner, access: AccessModel,
                 peers: PeerNode | None) -> None:
        self.cfg = cfg
        self.pinner = pinner
        self.access = access
        self.peers = peers
        self._seen_notes = 0
        self._last_round = 0.0
        # cid -> peer ids that agreed to keep a replica for us
        self.replicas: dict[bytes, set[str]] = {}

    async def step(self) -> None:
        if self.cfg.auto_pin_trust_threshold and self.peers is not None:
            self._auto_pin()
        if self.cfg.recent_access_window:
            self._recent()
        if self.cfg.collaborative and self.peers is not None and \
                time.monotonic() - self._last_round >= ASK_EVERY:
            self._last_round = time.monotonic()
            await self._collaborate()

    def _auto_pin(self) -> None:
        assert self.peers is not None
        notes = self.peers.announcements
        for note in notes[self._seen_notes - len(notes) if self._seen_notes else 0:]:
            state = self.peers.peers.get(str(note.get("sender")))
            cid = cidmod.parse(str(note.get("cid")))
            if state is not None and cid is not None and \
                    state.trust >= self.cfg.auto_pin_trust_threshold:
                self.pinner.pin(cid, reason="auto")
        self._seen_notes = len(notes)

    def _recent(self) -> None:
        now = time.time()
        window = self.cfg.recent_access_window
        recent = {file for file, (_, when, _) in list(self.access.position.items())
                  if now - when <= window}
        for file in recent:
            self.pinner.pin(file, reason="recent")
        for cid, _, reason in self.pinner.store.index.pins():
            if reason == "recent" and cid not in recent:
                self.pinner.unpin(cid)

    async def _collaborate(self) -> None:
        assert self.peers is not None
        trusted = {p.peer_id: p for p in self.peers.peers.values()
                   if p.trust >= self.cfg.trust_required}
        # Our own pinned copy is one replica; trusted peers that agreed to pin make the rest.
        wanted = max(0, self.cfg.min_peers - 1)
        for cid, complete, reason in self.pinner.store.index.pins():
            if not complete or reason == "peer":  # pins we hold for others are not ours
                continue
            holders = {p for p in self.replicas.get(cid, set()) if p in trusted}
            self.replicas[cid] = holders
            for peer in trusted:
                if len(holders) >= wanted:
                    break
                if peer in holders:
                    continue
                if await self.peers.ask_to_pin(peer, cid):
                    holders.add(peer)
                    log.info("peer %s keeps a replica of %s", peer, cidmod.to_str(cid))
            if len(holders) < wanted:
                log.info("%s has %d of %d replicas (not enough trusted peers agree)",
                         cidmod.to_str(cid), len(holders) + 1, self.cfg.min_peers)

    def count(self, cid: bytes) -> int:
        """Replicas of one of our pins: ours plus the peers keeping one for us."""
        return 1 + len(self.replicas.get(cid, ()))
