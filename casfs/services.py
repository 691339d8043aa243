"""Assembling a node: store → fetcher (with the discovery chain) → DAG → reader → tree.

The mount and the offline commands (`casfs cat`) build the same stack here, so they read the
same way; only the mount has a nursery for read-ahead and housekeeping.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from casfs.chain import ContentSource, DiscoveryChain
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


def build_sources(cfg: Config, store: Store, peers: PeerNode | None = None
                  ) -> list[ContentSource]:
    sources: list[ContentSource] = []
    if peers is not None:
        from casfs.chain.peer import PeerSource

        sources.append(PeerSource(peers))
    if cfg.ipfs_api:
        sources.append(IPFSNodeSource(cfg.ipfs_api, timeout=cfg.ipfs_timeout,
                                      retry_after=cfg.ipfs_retry_after))
    if cfg.gateway_url:
        sources.append(GatewaySource(cfg.gateway_url, store.put, store.drop, store.get,
                                     timeout=cfg.gateway_timeout,
                                     retry_after=cfg.gateway_retry_after))
    return sources


@asynccontextmanager
async def open_node(cfg: Config, store: Store, nursery: trio.Nursery | None = None,
                    peers: PeerNode | None = None) -> AsyncIterator[Node]:
    chain = DiscoveryChain(build_sources(cfg, store, peers), ttl=cfg.deadline,
                           order=cfg.chain_order)
    fetcher = BlockFetcher(store, chain if chain.sources else None)
    dag = Dag(fetcher, cfg.max_cached_nodes)
    readahead = None
    if nursery is not None and chain.sources and cfg.readahead_bytes:
        readahead = ReadAhead(dag, fetcher, nursery, cfg.readahead_bytes)
    reader = Reader(dag, fetcher, readahead)
    try:
        yield Node(cfg, store, chain, fetcher, dag, reader, Tree(store, dag, reader))
    finally:
        await chain.aclose()


def peer_node(cfg: Config, store: Store) -> PeerNode | None:
    if not cfg.p2p_enabled:
        return None
    from casfs.p2p.node import P2PSettings, PeerNode  # py-libp2p takes ~0.4 s to import

    return PeerNode(cfg.home, store, P2PSettings(
        listen=cfg.p2p_listen, bootstrap=cfg.p2p_bootstrap,
        bandwidth_limit=cfg.p2p_bandwidth_limit, ipfs_api=cfg.ipfs_api,
        gateway_url=cfg.gateway_url))


def control_handler(node: Node, peers: PeerNode | None):  # type: ignore[no-untyped-def]
    """What the control socket answers (see casfs/control.py)."""

    async def handle(request: dict[str, object]) -> dict[str, object]:
        cmd = request.get("cmd")
        if cmd == "status":
            return {"sources": node.chain.stats()}
        if peers is None:
            raise RuntimeError("the peer network is off (p2p.enabled = false)")
        if cmd in ("id", "peers"):
            return peers.status()
        if cmd == "connect":
            addr = str(request.get("addr", ""))
            peer = await peers.connect(addr)
            peers.dial(addr)  # and keep it connected
            return {"peer_id": peer}
        raise ValueError(f"unknown command {cmd!r}")

    return handle


def write_status(node: Node) -> None:
    facts = {"pid": os.getpid(), "sources": node.chain.stats()}
    tmp = node.cfg.status_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(facts))
    os.replace(tmp, node.cfg.status_file)


async def housekeeping(node: Node, every: float = 1.0,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Make fetched blocks durable and visible in the index; publish source statistics."""
    task_status.started()
    while True:
        await trio.sleep(every)
        await sync_store(node.store)
        write_status(node)


async def sync_store(store: Store) -> None:
    rows = store.take_pending()
    if rows:
        await trio.to_thread.run_sync(store.flush_files)
        store.index.record_blocks(rows)
