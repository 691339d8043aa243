"""The mount's peer node: a py-libp2p host (noise + yamux only) serving /cas/1.0.0, the peer
table, bootstrap dialling with backoff, capability exchange and new-content announcements."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiaddr
import trio
from cachetools import LRUCache
from libp2p import new_host
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519
from libp2p.custom_types import TProtocol
from libp2p.network import swarm as _swarm
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID as GOSSIPSUB_ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.tools.anyio_service import background_trio_service

from casfs import cid as cidmod
from casfs.limit import TokenBucket
from casfs.p2p import identity, swarmkey
from casfs.p2p.bloom import Bloom
from casfs.p2p.bridge import IpfsPubsubBridge
from casfs.p2p.client import Client, PeerUnavailable
from casfs.p2p.config import (
    CAPS_REFRESH,
    CONNECT_TIMEOUT,
    PROTOCOL_ID,
    REDIAL_FIRST,
    REDIAL_MAX,
    TOPIC,
)
from casfs.p2p.peers import PeerState
from casfs.p2p.server import Server
from casfs.p2p.wire import Message, Msg
from casfs.store import Store

log = logging.getLogger(__name__)

# Every connect() would otherwise wait a fixed 250 ms before dialling (FACTS.md).
_swarm._HAPPY_EYEBALLS_DELAY = 0


@dataclass(frozen=True)
class P2PSettings:
    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: tuple[str, ...] = ()
    bandwidth_limit: int = 0
    ipfs_api: str = ""
    gateway_url: str = ""
    bridge: bool = True  # relay announcements to and from the IPFS node's pubsub
    trusted: tuple[str, ...] = ()  # did:keys or peer ids allowed private blocks


class PeerNode:
    def __init__(self, home: Path, store: Store, settings: P2PSettings) -> None:
        self.store = store
        self.settings = settings
        self.keypair = identity.load_or_create(home)
        self.did = identity.did_key(self.keypair)
        # Noise only: with the default options a peer knowing only a victim's public key was
        # accepted as that victim over plaintext/secio (FACTS.md).
        noise = NoiseTransport(self.keypair, noise_privkey=create_x25519().private_key)
        self.home = home
        self.psk = swarmkey.load(home)  # a private swarm: only holders of the key connect
        self.host = new_host(key_pair=self.keypair, sec_opt={NOISE_ID: noise},
                             muxer_preference="YAMUX", psk=self.psk)
        self.peer_id = str(self.host.get_id())
        self.peers: dict[str, PeerState] = {}
        self.client = Client(self.host)
        self.server = Server(store, self._on_hello, self.hello, self._on_pin,
                             may_have_private=self._trusted,
                             bucket=TokenBucket(settings.bandwidth_limit),
                             on_key=self._on_key)
        # Set by the mount: decides whether to keep a replica a peer asks for.
        self.pin_handler: Any = None
        self.bloom = Bloom.for_items(0)
        self._bloom_items = 0
        self._bloom_since = 0.0
        self._dialling: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self.pubsub: Pubsub | None = None
        self.announcements: list[dict[str, Any]] = []
        self._seen: LRUCache[tuple[str, str], bool] = LRUCache(maxsize=4096)
        self.bridge: IpfsPubsubBridge | None = None
        if settings.ipfs_api and settings.bridge:
            self.bridge = IpfsPubsubBridge(_api_url(settings.ipfs_api), TOPIC)

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listen = [multiaddr.Multiaddr(a) for a in self.settings.listen]
        gossipsub = GossipSub(protocols=[GOSSIPSUB_ID], degree=6, degree_low=4, degree_high=12,
                              heartbeat_initial_delay=0.1, heartbeat_interval=1,
                              # the default 10 msg/s per topic silently dropped bursts
                              max_messages_per_topic_per_second=1000.0)
        self.pubsub = Pubsub(self.host, gossipsub)
        async with self.host.run(listen_addrs=listen), trio.open_nursery() as nursery:
            self._nursery = nursery
            self.host.set_stream_handler(TProtocol(PROTOCOL_ID), self.server.handle)
            async with background_trio_service(self.pubsub), \
                    background_trio_service(gossipsub):
                await self.pubsub.wait_until_ready()
                subscription = await self.pubsub.subscribe(TOPIC)
                self._refresh_bloom()
                nursery.start_soon(self._receive_announcements, subscription)
                nursery.start_soon(self._maintain)
                if self.bridge is not None:
                    nursery.start_soon(self.bridge.run, self._from_ipfs)
                for addr in self.settings.bootstrap:
                    self.dial(addr)
                log.info("peer %s listening on %s", self.peer_id, ", ".join(self.addrs()))
                task_status.started()
                await trio.sleep_forever()

    def addrs(self) -> list[str]:
        return [f"{a}/p2p/{self.peer_id}" if "/p2p/" not in str(a) else str(a)
                for a in self.host.get_addrs()]

    # -- connecting -------------------------------------------------------------------------

    def dial(self, addr: str) -> None:
        """Keep a connection to addr, redialling with backoff when it drops."""
        if addr in self._dialling or self._nursery is None:
            return
        self._dialling.add(addr)
        self._nursery.start_soon(self._keep_dialled, addr)

    async def connect(self, addr: str) -> str:
        """Connect once and exchange capabilities; returns the peer id."""
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        network = self.host.get_network()
        # A failed dial blocks the peer for 60 s and pins its old address (FACTS.md).
        if hasattr(network, "unblock_peer"):
            network.unblock_peer(info.peer_id)
        self.host.get_peerstore().clear_addrs(info.peer_id)
        with trio.fail_after(CONNECT_TIMEOUT):
            await self.host.connect(info)
        await self.exchange_hello(str(info.peer_id))
        return str(info.peer_id)

    async def _keep_dialled(self, addr: str) -> None:
        delay = REDIAL_FIRST
        peer = str(info_from_p2p_addr(multiaddr.Multiaddr(addr)).peer_id)
        while True:
            if peer not in self.peers:
                try:
                    await self.connect(addr)
                    log.info("connected to %s", addr)
                    delay = REDIAL_FIRST
                except Exception as exc:  # noqa: BLE001 — any dial failure means "retry later"
                    log.info("could not reach %s (%s); retrying in %.0f s", addr,
                             type(exc).__name__, delay)
                    await trio.sleep(delay)
                    delay = min(REDIAL_MAX, delay * 2)
                    continue
            await trio.sleep(0.5)

    # -- capabilities -----------------------------------------------------------------------

    def hello(self) -> Message:
        caps = {"did": self.did, "bandwidth_limit": self.settings.bandwidth_limit,
                "ipfs": {"enabled": bool(self.settings.ipfs_api),
                         "type": "kubo" if self.settings.ipfs_api else
                         ("gateway-only" if self.settings.gateway_url else "none"),
                         "public_gateway": self.settings.gateway_url,
                         "swarm_addresses": []}}
        return Message(Msg.HELLO, caps, self.bloom.encode())

    def _on_hello(self, peer: str, msg: Message) -> None:
        state = self.peers.get(peer)
        if state is None:
            state = self.peers[peer] = PeerState(peer)
            saved = self.store.index.trust(peer)  # trust earned in earlier mounts
            if saved is not None:
                state.trust = saved
            log.info("peer %s joined (%s)", peer, msg.header.get("did", "?"))
        state.did = str(msg.header.get("did", ""))
        state.caps = msg.header
        state.bloom = Bloom.decode(msg.body)

    async def exchange_hello(self, peer: str) -> None:
        reply = await self.client.request(peer, self.hello())
        if reply.type != Msg.HELLO:
            raise PeerUnavailable(f"{peer} answered HELLO with {reply.type.name}")
        self._on_hello(peer, reply)

    def _refresh_bloom(self) -> bool:
        """Add blocks stored since the last look; True if the filter changed."""
        rows = self.store.index.conn.execute(
            "SELECT mh, added FROM blocks WHERE added >= ?", (self._bloom_since,)).fetchall()
        if not rows:
            return False
        total = self._bloom_items + len(rows)
        if total > 2 * max(self._bloom_items, 1024):  # outgrown: rebuild at the new size
            rows = self.store.index.conn.execute("SELECT mh, added FROM blocks").fetchall()
            self.bloom = Bloom.for_items(2 * len(rows))
            self._bloom_items = 0
        for mh, _ in rows:
            self.bloom.add(mh)
        self._bloom_items += len(rows)
        self._bloom_since = max(added for _, added in rows)
        return True

    async def _maintain(self) -> None:
        """Drop peers that went away; tell peers when our holdings changed."""
        last_roots = time.time()
        while True:
            await trio.sleep(CAPS_REFRESH)
            connected = {str(p) for p in self.host.get_connected_peers()}
            for peer in list(self.peers):
                if peer not in connected:
                    log.info("peer %s left", peer)
                    del self.peers[peer]
                    self.client.forget(peer)
            if self.peers:
                self.store.index.save_trust({p: s.trust for p, s in self.peers.items()})
            if self._refresh_bloom():
                for peer in list(self.peers):
                    self._nursery.start_soon(self._quiet_hello, peer)  # type: ignore[union-attr]
            last_roots = await self._announce_new_roots(last_roots)

    async def _quiet_hello(self, peer: str) -> None:
        try:
            await self.exchange_hello(peer)
        except Exception as exc:  # noqa: BLE001 — the peer will be dropped if it is gone
            log.debug("hello to %s failed: %s", peer, exc)

    # -- announcements ----------------------------------------------------------------------

    async def _announce_new_roots(self, since: float) -> float:
        rows = self.store.index.conn.execute(
            "SELECT cid, size, added FROM content WHERE is_root = 1 AND added > ? "
            "ORDER BY added", (since,)).fetchall()
        for cid, size, added in rows:
            await self.announce(cid, size)
            since = max(since, added)
        return since

    async def announce(self, cid: bytes, size: int) -> None:
        note = {"type": "new-content", "cid": cidmod.to_str(cid), "size": size,
                "sender": self.peer_id, "did": self.did}
        self._seen[(note["cid"], self.peer_id)] = True
        await self._publish(note)

    async def _publish(self, note: dict[str, Any]) -> None:
        if self.pubsub is not None:
            await self.pubsub.publish(TOPIC, json.dumps(note).encode())
        if self.bridge is not None:
            await self.bridge.publish(note)

    async def _receive_announcements(self, subscription: Any) -> None:
        while True:
            msg = await subscription.get()
            try:
                note = json.loads(msg.data)
            except ValueError:
                continue
            if isinstance(note, dict) and self._note(note) and self.bridge is not None:
                await self.bridge.publish(note)  # gossipsub -> IPFS pubsub

    async def _from_ipfs(self, note: dict[str, Any]) -> None:
        if self._note(note) and self.pubsub is not None:  # IPFS pubsub -> gossipsub
            await self.pubsub.publish(TOPIC, json.dumps(note).encode())

    def _note(self, note: dict[str, Any]) -> bool:
        """Record an announcement; False if it is ours or was seen already (no echo loops)."""
        try:
            sender = str(note["sender"])
            cid = str(note["cid"])
        except (KeyError, TypeError):
            return False
        if sender == self.peer_id or (cid, sender) in self._seen:
            return False
        self._seen[(cid, sender)] = True
        self.announcements = (self.announcements + [note])[-256:]
        state = self.peers.get(sender)
        if state is not None:
            state.announced[cid] = time.time()
        log.info("peer %s announced %s (%s bytes)", sender, cid, note.get("size"))
        return True

    def _trusted(self, peer: str) -> bool:
        state = self.peers.get(peer)
        allowed = self.settings.trusted
        return peer in allowed or (state is not None and state.did in allowed)

    def _on_key(self, peer: str, sealed: bytes) -> tuple[bool, str]:
        """A trusted peer shares its swarm key: keep it (used from the next mount on)."""
        if not self._trusted(peer):
            return False, "not a trusted peer"
        try:
            text = swarmkey.open_sealed(self.keypair, sealed)
            key = swarmkey.parse(text)
        except Exception as exc:  # noqa: BLE001 — whatever is wrong, the answer is no
            return False, f"unreadable key: {type(exc).__name__}"
        current = swarmkey.load(self.home)
        if current is not None and current != key:
            return False, "a different swarm key is installed"
        swarmkey.write(self.home / "swarm.key", text)
        log.info("peer %s shared a swarm key; it is used from the next mount on", peer)
        return True, "stored"

    async def share_key(self, peer: str) -> str:
        path = self.home / "swarm.key"
        if not path.exists():
            raise ValueError("no swarm key here: run 'casfs swarm-key generate' first")
        state = self.peers.get(peer)
        if state is None or not state.did:
            raise ValueError(f"{peer} is not connected")
        sealed = swarmkey.seal_for(peer, state.did, path.read_text())
        reply = await self.client.request(peer, Message(Msg.KEY, {}, sealed))
        if reply.type != Msg.KEY_REPLY or reply.header.get("ok") is not True:
            raise ValueError(f"{peer} did not take the key: {reply.header.get('reason')}")
        return str(reply.header.get("reason"))

    def _on_pin(self, peer: str, cid: bytes) -> tuple[bool, str]:
        state = self.peers.get(peer)
        if self.pin_handler is None:
            return False, "pinning not offered"
        return self.pin_handler(peer, state.trust if state else 0.0, cid)

    async def ask_to_pin(self, peer: str, cid: bytes) -> bool:
        """Ask a peer to keep a replica of cid; True if it agreed."""
        try:
            reply = await self.client.request(
                peer, Message(Msg.PIN, {"cid": cidmod.to_str(cid)}))
        except Exception as exc:  # noqa: BLE001 — an unreachable peer simply does not agree
            log.debug("pin request to %s failed: %s", peer, exc)
            return False
        return reply.type == Msg.PIN_REPLY and reply.header.get("ok") is True

    def status(self) -> dict[str, Any]:
        return {"peer_id": self.peer_id, "did": self.did, "addrs": self.addrs(),
                "served_blocks": self.server.served_blocks,
                "served_bytes": self.server.served_bytes,
                "refused": self.server.refused,
                "peers": [p.as_dict() for p in self.peers.values()],
                "announcements": self.announcements[-32:],
                "ipfs_pubsub": None if self.bridge is None else
                {"sent": self.bridge.sent, "received": self.bridge.received}}


def _api_url(api: str) -> str:
    """http://host:port of an /ip4/H/tcp/P/http multiaddr (or a URL, unchanged)."""
    parts = api.strip("/").split("/")
    if len(parts) >= 4 and parts[2] == "tcp":
        return f"http://{parts[1]}:{parts[3]}"
    return api
