"""Assembling a node: store → fetcher (with the discovery chain) → DAG → reader → tree.

The mount and the offline commands (`casfs cat`) build the same stack here, so they read the
same way; only the mount has a nursery for read-ahead and housekeeping.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from casfs import cid as cidmod
from casfs.cache.access import AccessModel
from casfs.chain import ContentSource, DiscoveryChain
from casfs.chain.classes import Preferences, classify, current_file
from casfs.chain.gateway import GatewaySource
from casfs.chain.ipfs import IPFSNodeSource
from casfs.config import Config
from casfs.dag import Dag
from casfs.fetcher import BlockFetcher
from casfs.reader import ReadAhead, Reader
from casfs.store import Store
from casfs.tree import Tree

if TYPE_CHECKING:
    from casfs.p2p.node import PeerNode
    from casfs.pinning import Pinner

log = logging.getLogger(__name__)


@dataclass
class Node:
    cfg: Config
    store: Store
    chain: DiscoveryChain
    fetcher: BlockFetcher
    dag: Dag
    reader: Reader
    tree: Tree
    access: AccessModel


def build_sources(cfg: Config, store: Store, peers: PeerNode | None = None
                  ) -> list[ContentSource]:
    sources: list[ContentSource] = []
    if peers is not None:
        from casfs.chain.peer import PeerSource

        sources.append(PeerSource(peers, min_trust=0.2 if cfg.routing_strategy == "trust"
                                  else 0.0))
    if cfg.ipfs_api:
        sources.append(IPFSNodeSource(cfg.ipfs_api, timeout=cfg.ipfs_timeout,
                                      retry_after=cfg.ipfs_retry_after,
                                      bandwidth_limit=cfg.ipfs_bandwidth_limit))
    if cfg.gateway_url:
        sources.append(GatewaySource(cfg.gateway_url, store.put, store.drop, store.get,
                                     timeout=cfg.gateway_timeout,
                                     retry_after=cfg.gateway_retry_after))
    return sources


@asynccontextmanager
async def open_node(cfg: Config, store: Store, nursery: trio.Nursery | None = None,
                    peers: PeerNode | None = None) -> AsyncIterator[Node]:
    router = None
    if cfg.routing_strategy:
        from casfs.chain.routing import STRATEGIES, ContentRouter

        router = ContentRouter(STRATEGIES[cfg.routing_strategy]())
    access = AccessModel()

    def classifier(cid: bytes, private: bool) -> set[str]:
        read = current_file.get()
        if read is None:
            return classify(private, None, None, None)
        file, size = read
        last = access.position.get(file)
        row = store.index.content(file)
        return classify(private, size, last[1] if last else None, row.added if row else None)

    chain = DiscoveryChain(build_sources(cfg, store, peers), ttl=cfg.deadline,
                           order=cfg.chain_order, router=router,
                           requester=peers.did if peers is not None else "",
                           classifier=classifier if cfg.content_classes else None,
                           preferences=Preferences(cfg.prefer_p2p, cfg.prefer_ipfs))
    for source in chain.sources:  # trust learned in earlier mounts
        prior = store.index.trust(f"source:{source.name}")
        if prior is not None:
            source.stats.prior_trust = prior
    fetcher = BlockFetcher(store, chain if chain.sources else None,
                           memory_bytes=cfg.memory_cache_bytes, nursery=nursery)
    dag = Dag(fetcher, cfg.max_cached_nodes)
    readahead = None
    if nursery is not None and chain.sources and cfg.readahead_bytes:
        readahead = ReadAhead(dag, fetcher, nursery, cfg.readahead_bytes)
    reader = Reader(dag, fetcher, readahead, access)
    try:
        yield Node(cfg, store, chain, fetcher, dag, reader, Tree(store, dag, reader), access)
    finally:
        await chain.aclose()


def peer_node(cfg: Config, store: Store) -> PeerNode | None:
    if not cfg.p2p_enabled:
        return None
    from casfs.p2p.node import P2PSettings, PeerNode  # py-libp2p takes ~0.4 s to import

    return PeerNode(cfg.home, store, P2PSettings(
        listen=cfg.p2p_listen, bootstrap=cfg.p2p_bootstrap,
        bandwidth_limit=cfg.p2p_bandwidth_limit, ipfs_api=cfg.ipfs_api,
        gateway_url=cfg.gateway_url, trusted=cfg.p2p_trusted))


def control_handler(node: Node, peers: PeerNode | None,  # type: ignore[no-untyped-def]
                    pinner: Pinner | None = None):
    """What the control socket answers (see casfs/control.py)."""

    async def resolve(name: object) -> bytes:
        first, *rest = str(name).strip("/").split("/")
        cid = await node.tree.resolve_root_name(first)
        for part in rest:
            cid = await node.tree.child(cid, part)
        return cid

    async def handle(request: dict[str, object]) -> dict[str, object]:
        cmd = request.get("cmd")
        if cmd == "status":
            return {"sources": node.chain.stats()}
        if cmd in ("pin", "unpin", "pin_progress") and pinner is not None:
            cid = await resolve(request.get("name", ""))
            if cmd == "pin":
                return {"cid": cidmod.to_str(cid), "new": pinner.pin(cid)}
            if cmd == "unpin":
                return {"cid": cidmod.to_str(cid), "removed": pinner.unpin(cid)}
            state = pinner.state(cid)
            return {"cid": cidmod.to_str(cid), "pinned": state is not None,
                    "done": state.done if state else 0, "known": state.known if state else 0,
                    "complete": bool(state and state.complete) or
                    node.store.index.pin_state(cid) is True}
        if peers is None:
            raise RuntimeError("the peer network is off (p2p.enabled = false)")
        if cmd in ("id", "peers"):
            return peers.status()
        if cmd == "share_key":
            return {"reply": await peers.share_key(str(request.get("peer", "")))}
        if cmd == "connect":
            addr = str(request.get("addr", ""))
            peer = await peers.connect(addr)
            peers.dial(addr)  # and keep it connected
            return {"peer_id": peer}
        raise ValueError(f"unknown command {cmd!r}")

    return handle


def write_status(node: Node, extra: dict[str, object] | None = None) -> None:
    f = node.fetcher
    cache = {"memory_bytes": f.memory.currsize, "memory_hits": f.memory_hits,
             "memory_misses": f.memory_misses,
             "hit_rate": round(f.memory_hits / max(f.memory_hits + f.memory_misses, 1), 3),
             "page_cache_pushed": node.reader.pusher.pushed_bytes if node.reader.pusher else 0}
    facts = {"pid": os.getpid(), "sources": node.chain.stats(), "cache": cache,
             **(extra or {})}
    tmp = node.cfg.status_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(facts))
    os.replace(tmp, node.cfg.status_file)


Step = Callable[[], Awaitable[None]]


async def housekeeping(node: Node, steps: list[Step], status: Callable[[], dict[str, object]],
                       every: float = 1.0,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Every second: make fetched blocks durable and visible in the index, save access times,
    run the given steps (eviction, pinning policy), publish statistics."""
    task_status.started()
    while True:
        await trio.sleep(every)
        await sync_store(node.store)
        atimes = node.access.take_atimes()
        if atimes:
            node.store.index.touch(atimes)
        for step in steps:
            try:
                await step()
            except Exception:  # one failing policy must not stop durability and the rest
                log.exception("housekeeping step %s failed", getattr(step, "__name__", step))
        node.store.index.save_trust({f"source:{s.name}": s.stats.trust()
                                     for s in node.chain.sources})
        write_status(node, status())


async def sync_store(store: Store) -> None:
    rows = store.take_pending()
    if rows:
        await trio.to_thread.run_sync(store.flush_files)
        store.index.record_blocks(rows)
