"""Several casfs nodes, each its own process, store and mount, talking /cas/1.0.0 on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Casfs, Mount, random_file, wait_for

pytestmark = pytest.mark.mount
CHUNK = 262144
HERE = Path(__file__).parent


class Node:
    def __init__(self, home: Path, mount: Mount) -> None:
        self.cli = Casfs(home)
        self.mount = mount

    @property
    def path(self) -> Path:
        return self.mount.path

    def id(self) -> dict[str, object]:
        return json.loads(self.cli.run("id", "--json").stdout)

    @property
    def addr(self) -> str:
        return str(self.id()["addrs"][0])  # type: ignore[index]

    def peers(self) -> list[dict[str, object]]:
        return json.loads(self.cli.run("peers", "--json").stdout)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(*bootstrap: str, deadline: float = 10, extra: str = "", p2p: str = "",
             chain: str = "") -> Node:
        """A node: p2p and chain are extra lines for those sections, extra whole sections."""
        home = tmp_path / f"node{len(made)}"
        home.mkdir(exist_ok=True)
        (home / "config.toml").write_text(
            f"[p2p]\nbootstrap = {json.dumps(list(bootstrap))}\n{p2p}"
            f"[chain]\ndeadline = {deadline}\n{chain}{extra}")
        mnt = tmp_path / f"mnt{len(made)}"
        mnt.mkdir()
        m = Mount(Casfs(home), mnt)
        m.start()
        node = Node(home, m)
        made.append(node)
        return node

    yield make
    for node in made:
        node.mount.stop()
    for node in made:
        assert "Traceback" not in node.mount.log(), node.mount.log()



def connected(node: Node, n: int) -> bool:
    return len(node.peers()) >= n


def test_three_nodes_add_read_announce(nodes: Callable[..., Node], tmp_path: Path) -> None:
    a = nodes()
    b = nodes(a.addr)
    c = nodes(b.addr, a.addr)
    assert wait_for(lambda: connected(a, 2) and connected(c, 2))
    time.sleep(2)  # let gossipsub build its mesh (1 s heartbeats)
    f = random_file(tmp_path / "f", 10 * CHUNK + 99, seed=31)
    (cid,) = a.cli.add(f)
    out = subprocess.run(["cat", str(c.path / cid)], capture_output=True, timeout=60).stdout
    assert out == f.read_bytes()
    a_id = a.id()["peer_id"]

    def announced(node: Node) -> bool:
        return any(p["peer_id"] == a_id and cid in p["announced"] for p in node.peers())

    assert wait_for(lambda: announced(b) and announced(c))
    src = subprocess.run(["getfattr", "--only-values", "-n", "user.cas.source",
                          str(c.path / cid)], capture_output=True, text=True).stdout
    assert src.startswith("peer ")  # the peer that served the blocks


def _two_holders_and_reader(nodes: Callable[..., Node], tmp_path: Path, size: int,
                            deadline: float = 10) -> tuple[Node, Node, Node, str, Path]:
    f = random_file(tmp_path / "big", size, seed=32)
    h1 = nodes()
    h2 = nodes()
    (cid,) = h1.cli.add(f)
    assert h2.cli.add(f) == [cid]
    r = nodes(h1.addr, h2.addr, deadline=deadline)
    assert wait_for(lambda: connected(r, 2))
    time.sleep(CAPS_WAIT)  # holders' Bloom filters reach the reader
    return h1, h2, r, cid, f


CAPS_WAIT = 2.5


def test_kill_serving_peer_mid_read(nodes: Callable[..., Node], tmp_path: Path) -> None:
    h1, h2, r, cid, f = _two_holders_and_reader(nodes, tmp_path, 160 * CHUNK)
    reader = subprocess.Popen(["sha256sum", str(r.path / cid)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    time.sleep(0.15)
    os.kill(h1.mount.pid, signal.SIGKILL)
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert out.split()[0] == hashlib.sha256(f.read_bytes()).hexdigest()
    h1.mount.stop()


def test_frozen_holder_falls_through(nodes: Callable[..., Node], tmp_path: Path) -> None:
    h1, h2, r, cid, f = _two_holders_and_reader(nodes, tmp_path, 24 * CHUNK, deadline=8)
    os.kill(h1.mount.pid, signal.SIGSTOP)
    try:
        t = time.monotonic()
        out = subprocess.run(["cat", str(r.path / cid)], capture_output=True, timeout=60)
        took = time.monotonic() - t
    finally:
        os.kill(h1.mount.pid, signal.SIGCONT)
    assert out.returncode == 0 and out.stdout == f.read_bytes()
    assert took < 8


@pytest.mark.expect_warnings
def test_lying_peer(nodes: Callable[..., Node], tmp_path: Path) -> None:
    liar = subprocess.Popen([sys.executable, str(HERE / "peer_tool.py"), "liar"],
                            stdout=subprocess.PIPE, text=True)
    try:
        liar_addr = liar.stdout.readline().strip()  # type: ignore[union-attr]
        f = random_file(tmp_path / "f", 12 * CHUNK + 5, seed=33)
        honest = nodes()
        (cid,) = honest.cli.add(f)
        r = nodes(liar_addr, deadline=4)
        assert wait_for(lambda: connected(r, 1))
        with pytest.raises(OSError):  # only the liar: nothing verifiable, so nothing at all
            (r.path / cid).read_bytes()
        r.cli.run("peers", "add", honest.addr)
        assert wait_for(lambda: connected(r, 2))
        time.sleep(CAPS_WAIT)
        assert (r.path / cid).read_bytes() == f.read_bytes()
        liar_id = liar_addr.rsplit("/", 1)[1]
        (state,) = [p for p in r.peers() if p["peer_id"] == liar_id]
        assert state["corrupt"] >= 1 and state["trust"] < 0.5
        assert "corrupt block" in r.mount.log()
    finally:
        liar.kill()
        liar.wait()


def test_garbage_frames_do_not_hurt_a_node(nodes: Callable[..., Node], tmp_path: Path) -> None:
    f = random_file(tmp_path / "f", 3 * CHUNK, seed=34)
    a = nodes()
    (cid,) = a.cli.add(f)
    res = subprocess.run([sys.executable, str(HERE / "peer_tool.py"), "garbage", a.addr],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    b = nodes(a.addr)
    assert wait_for(lambda: connected(b, 1))
    assert (b.path / cid).read_bytes() == f.read_bytes()
    assert "Traceback" not in a.mount.log()


def test_get_many_streams_blocks_in_order(nodes: Callable[..., Node], tmp_path: Path) -> None:
    """A batch of GETs on one stream: one reply per CID, in order, NOT_FOUND in its place."""
    from casfs import cid as cidmod

    f = random_file(tmp_path / "f", 3 * CHUNK, seed=36)
    a = nodes()
    a.cli.add(f)
    data = f.read_bytes()
    digests = [hashlib.sha256(data[i : i + CHUNK]).digest() for i in range(0, len(data), CHUNK)]
    leaves = [cidmod.to_str(cidmod.raw_from_sha256(d)) for d in digests]
    absent = cidmod.to_str(cidmod.raw_from_sha256(hashlib.sha256(b"nowhere").digest()))
    ask = [leaves[2], leaves[0], absent, leaves[1]]
    res = subprocess.run([sys.executable, str(HERE / "peer_tool.py"), "getmany", a.addr, *ask],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:4] == [
        f"BLOCK {digests[2].hex()}", f"BLOCK {digests[0].hex()}", "NOT_FOUND",
        f"BLOCK {digests[1].hex()}"]


def test_peers_add_and_cli(nodes: Callable[..., Node], tmp_path: Path) -> None:
    a = nodes()
    b = nodes()
    assert b.peers() == []
    res = b.cli.run("peers", "add", a.addr)
    assert "connected" in res.stdout
    assert wait_for(lambda: connected(a, 1))
    bad = b.cli.run("peers", "add", "/ip4/127.0.0.1/tcp/1", check=False)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    ident = a.id()
    assert str(ident["did"]).startswith("did:key:z6Mk")


def test_swarm_spreads_and_wastes_nothing(nodes: Callable[..., Node], tmp_path: Path) -> None:
    f = random_file(tmp_path / "f", 96 * CHUNK, seed=35)
    holders = [nodes() for _ in range(3)]
    for h in holders:
        (cid,) = h.cli.add(f)
    idle = nodes()  # connected, holds nothing
    r = nodes(*(h.addr for h in holders), idle.addr)
    assert wait_for(lambda: connected(r, 4))
    time.sleep(CAPS_WAIT)
    assert (r.path / cid).read_bytes() == f.read_bytes()
    sent = [json.loads(h.cli.run("status", "--json").stdout)["p2p"]["served_bytes"]
            for h in holders]
    # Blocks were spread over the holders, and about one copy of each was sent in all
    # (counted by the senders, so hedged requests that lost the race count too).
    assert sum(1 for s in sent if s > 0) >= 2, sent
    assert len(f.read_bytes()) <= sum(sent) <= 1.1 * len(f.read_bytes()) + CHUNK, sent
    idle_sent = json.loads(idle.cli.run("status", "--json").stdout)["p2p"]["served_bytes"]
    assert idle_sent == 0
