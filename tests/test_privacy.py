"""Private content, privacy-first routing and bandwidth limits between real nodes."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Casfs, random_file, wait_for
from jsipfs import JsIpfs
from liars import Proxy
from test_peers import Node, connected, nodes  # noqa: F401  (fixture)

pytestmark = pytest.mark.mount
CHUNK = 262144


def test_private_content_only_for_trusted_peers(nodes: Callable[..., Node],  # noqa: F811
                                                tmp_path: Path) -> None:
    # The fixture names homes node0, node1, …: node2 will be the friend, so its identity can
    # be made (and trusted by the owner) before it starts.
    friend_home = tmp_path / "node2"
    friend_home.mkdir()
    friend_did = json.loads(Casfs(friend_home).run("id", "--json").stdout)["did"]
    owner = nodes(p2p=f'trusted = ["{friend_did}"]\n')
    secret = random_file(tmp_path / "secret", 3 * CHUNK, seed=101)
    (cid,) = owner.cli.run("add", "--quiet", "--private", secret).stdout.split()
    stranger = nodes(owner.addr, deadline=4)
    friend = nodes(owner.addr)
    assert wait_for(lambda: connected(stranger, 1) and connected(friend, 1))
    time.sleep(2.5)
    with pytest.raises(OSError):  # refused: not a byte reaches the stranger
        (stranger.path / cid).read_bytes()
    status = json.loads(owner.cli.run("status", "--json").stdout)
    assert status["p2p"]["refused"] >= 1
    assert (friend.path / cid).read_bytes() == secret.read_bytes()
    vis = subprocess.run(["getfattr", "--only-values", "-n", "user.cas.visibility",
                          str(owner.path / cid)], capture_output=True, text=True).stdout
    assert vis == "private"


@pytest.mark.ipfs
def test_privacy_first_never_asks_the_gateway_for_private_content(
        nodes: Callable[..., Node], jsipfs: JsIpfs, tmp_path: Path) -> None:  # noqa: F811
    owner = nodes()
    mine = random_file(tmp_path / "mine", 5 * CHUNK, seed=104)
    (cid,) = owner.cli.add(mine)
    public = random_file(tmp_path / "public", 2 * CHUNK, seed=105)
    public_cid = jsipfs.add_path(public)
    with Proxy(jsipfs.gateway_url, "none") as counter:
        r = nodes(owner.addr, chain='strategy = "privacy-first"\n',
                  extra=f'[gateway]\nurl = "{counter.url}"\n')
        assert wait_for(lambda: connected(r, 1))
        time.sleep(2.5)
        path = r.path / cid
        assert subprocess.run(["setfattr", "-n", "user.cas.visibility", "-v", "private",
                               str(path)]).returncode == 0
        assert path.read_bytes() == mine.read_bytes()
        assert counter.requests == 0  # private: peers only; the gateway never heard of it
        assert (r.path / public_cid).read_bytes() == public.read_bytes()
        assert counter.requests > 0  # public content still reads, through the gateway


def test_bandwidth_limit_holds(nodes: Callable[..., Node], tmp_path: Path) -> None:  # noqa: F811
    limit = 2_000_000
    f = random_file(tmp_path / "big", 40_000_000, seed=106)
    owner = nodes(p2p=f"bandwidth_limit = {limit}\n")
    (cid,) = owner.cli.add(f)
    r = nodes(owner.addr, deadline=60)
    assert wait_for(lambda: connected(r, 1))
    time.sleep(2.5)
    t = time.monotonic()
    out = subprocess.run(["cat", str(r.path / cid)], capture_output=True, timeout=120)
    took = time.monotonic() - t
    assert out.stdout == f.read_bytes()
    rate = len(out.stdout) / took
    # a one-second burst is allowed up front, so the average sits a little above the limit
    assert 0.9 * limit <= rate <= 1.1 * limit, rate


def test_private_swarm(nodes: Callable[..., Node], tmp_path: Path) -> None:  # noqa: F811
    a = nodes()
    b = nodes(a.addr, p2p=f'trusted = ["{a.id()["did"]}"]\n')
    assert wait_for(lambda: connected(b, 1))
    # A makes a key and shares it, sealed to B's key; B keeps it because it trusts A.
    a.cli.run("swarm-key", "generate")
    b_id = str(b.id()["peer_id"])
    assert "stored" in a.cli.run("swarm-key", "share", b_id).stdout
    assert (b.cli.home / "swarm.key").read_text() == (a.cli.home / "swarm.key").read_text()
    again = a.cli.run("swarm-key", "generate", check=False)
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1
    for node in (a, b):  # the key is used from the next mount on
        node.mount.stop()
        node.mount.start()
    f = random_file(tmp_path / "f", 2 * CHUNK, seed=107)
    (cid,) = a.cli.add(f)
    b.cli.run("peers", "add", a.addr)
    assert wait_for(lambda: connected(b, 1))
    time.sleep(2.5)
    assert (b.path / cid).read_bytes() == f.read_bytes()
    c = nodes(deadline=3)  # no key: cannot connect, cannot fetch
    res = c.cli.run("peers", "add", a.addr, check=False)
    assert res.returncode != 0
    assert c.peers() == []
    with pytest.raises(OSError):
        (c.path / cid).read_bytes()


@pytest.mark.expect_warnings
def test_trust_based_stops_asking_a_liar(nodes: Callable[..., Node],  # noqa: F811
                                         tmp_path: Path) -> None:
    import sys

    liar = subprocess.Popen([sys.executable, str(Path(__file__).parent / "peer_tool.py"),
                             "liar"], stdout=subprocess.PIPE, text=True)
    try:
        liar_addr = liar.stdout.readline().strip()  # type: ignore[union-attr]
        liar_id = liar_addr.rsplit("/", 1)[1]
        honest = nodes()
        files = [random_file(tmp_path / f"t{i}", 2 * CHUNK, seed=110 + i) for i in range(3)]
        cids = honest.cli.add(*files)
        r = nodes(liar_addr, deadline=3, chain='strategy = "trust"\n')
        assert wait_for(lambda: connected(r, 1))
        for cid in cids[:2]:  # only the liar to ask: two corrupt answers
            with pytest.raises(OSError):
                (r.path / cid).read_bytes()

        def liar_state() -> dict[str, object]:
            return next(p for p in r.peers() if p["peer_id"] == liar_id)

        assert liar_state()["corrupt"] == 2 and float(liar_state()["trust"]) < 0.2
        r.cli.run("peers", "add", honest.addr)
        assert wait_for(lambda: connected(r, 2))
        time.sleep(2.5)
        assert (r.path / cids[2]).read_bytes() == files[2].read_bytes()
        assert liar_state()["corrupt"] == 2  # never asked again
        saved = r.cli.home / "index.sqlite"
        import sqlite3

        with sqlite3.connect(saved) as db:  # and the verdict outlives the mount
            wait_for(lambda: db.execute("SELECT score FROM trust WHERE id = ?",
                                        (liar_id,)).fetchone() is not None)
            (score,) = db.execute("SELECT score FROM trust WHERE id = ?", (liar_id,)).fetchone()
        assert score < 0.2
    finally:
        liar.kill()
        liar.wait()


def test_performance_reads_mostly_from_the_fast_peer(nodes: Callable[..., Node],  # noqa: F811
                                                     tmp_path: Path) -> None:
    f = random_file(tmp_path / "f", 48 * CHUNK, seed=120)
    slow = nodes(p2p="bandwidth_limit = 500000\n")
    fast = nodes()
    for holder in (slow, fast):
        assert holder.cli.add(f)
    r = nodes(slow.addr, fast.addr, chain='strategy = "performance"\n')
    assert wait_for(lambda: connected(r, 2))
    time.sleep(2.5)
    assert (r.path / f"{fast.cli.add(f)[0]}").read_bytes() == f.read_bytes()
    got = {p["peer_id"]: p["bytes"] for p in r.peers()}
    from_fast, from_slow = got[fast.id()["peer_id"]], got[slow.id()["peer_id"]]
    assert from_fast > 2 * from_slow, (from_fast, from_slow)
