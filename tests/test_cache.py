"""Eviction policies (unit), and quota, pins and collaborative pinning on real mounts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import random_file, wait_for
from test_peers import Node, connected, nodes  # noqa: F401  (fixture)

from casfs import cid as cidmod
from casfs.cache.access import AccessModel
from casfs.cache.policy import LRU, Candidate, Context, Predictive, TrustBased
from casfs.store import Store

CHUNK = 262144


def cand(name: str, atime: float, source: str = "local") -> Candidate:
    return Candidate(name.encode(), 100, atime, source)


def test_policies_order_as_promised() -> None:
    a, b, c = cand("a", 3), cand("b", 1, "peer X"), cand("c", 2, "gateway g")
    assert LRU().order([a, b, c], Context()) == [b, c, a]
    trust = {"local": 1.0, "peer X": 0.9, "gateway g": 0.2}.__getitem__
    assert TrustBased().order([a, b, c], Context(trust=trust)) == [c, b, a]
    assert Predictive().order([a, b, c], Context(predicted={b"b"})) == [c, a, b]


def test_access_model_predicts_rest_of_file_and_companions() -> None:
    m = AccessModel()
    m.on_read(b"f1", 0, 100, [b"x"])
    m.on_read(b"f1", 100, 100, [b"y"])
    assert dict(m.predicted_files()) == {b"f1": 200}  # the rest of f1, from the reader on
    m.on_read(b"f2", 0, 10, [b"z"])  # read together with f1: each predicts all of the other
    predicted = dict(m.predicted_files())
    assert predicted == {b"f1": 0, b"f2": 0}
    m2 = AccessModel()
    m2.on_read(b"g", 500, 10, [])  # a random read: no prediction for g
    assert dict(m2.predicted_files()) == {}
    assert {mh for _, mh in m.take_atimes()} == {b"x", b"y", b"z"}


def xattr(path: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["getfattr", "--only-values", "-n", f"user.cas.{name}", str(path)],
                          capture_output=True, text=True)


def setx(path: Path, name: str, value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setfattr", "-n", f"user.cas.{name}", "-v", value, str(path)],
                          capture_output=True, text=True)


def test_pin_xattrs_round_trip_and_survive_restart_and_kill(
        nodes: Callable[..., Node], tmp_path: Path) -> None:  # noqa: F811
    holder = nodes()
    f = random_file(tmp_path / "f", 6 * CHUNK + 1, seed=51)
    (cid,) = holder.cli.add(f)
    r = nodes(holder.addr)
    assert wait_for(lambda: connected(r, 1))
    path = r.path / cid
    assert xattr(path, "pinned").stdout == "0"
    assert setx(path, "pinned", "1").returncode == 0
    assert wait_for(lambda: xattr(path, "pin_progress").stdout.startswith("8/8"))  # 7 + root
    assert xattr(path, "pinned").stdout == "1" and xattr(path, "local").stdout == "1.000"
    bad = setx(path, "pinned", "maybe")
    assert bad.returncode != 0 and "Invalid argument" in bad.stderr
    unknown = setx(path, "colour", "1")
    assert unknown.returncode != 0 and "No such attribute" in unknown.stderr
    assert subprocess.run(["setfattr", "-x", "user.cas.pinned", str(path)]).returncode == 0
    assert xattr(path, "pinned").stdout == "0"
    assert setx(path, "pinned", "1").returncode == 0
    # unmount and mount again, then kill -9 and mount again: the pin is still there
    r.mount.stop()
    r.mount.start()
    assert xattr(path, "pinned").stdout == "1"
    os.kill(r.mount.pid, signal.SIGKILL)
    time.sleep(0.5)
    r.mount.stop()
    r.mount.start()
    assert xattr(path, "pinned").stdout == "1"
    pins = json.loads(r.cli.run("pins", "--json").stdout)
    assert [p["cid"] for p in pins] == [cid]


def store_bytes(node: Node) -> int:
    return int(json.loads(node.cli.run("status", "--json").stdout)["block_bytes"])


def test_quota_keeps_pins_and_open_files(nodes: Callable[..., Node],  # noqa: F811
                                         tmp_path: Path) -> None:
    holder = nodes()
    files = [random_file(tmp_path / f"f{i}", 4 * CHUNK, seed=60 + i) for i in range(6)]
    cids = holder.cli.add(*files)
    quota = 6 * CHUNK
    r = nodes(holder.addr, extra=f"[cache]\nquota_bytes = {quota}\n")
    assert wait_for(lambda: connected(r, 1))
    pinned = r.path / cids[0]
    assert setx(pinned, "pinned", "1").returncode == 0
    assert wait_for(lambda: xattr(pinned, "pin_progress").stdout.startswith("5/5"))
    with open(r.path / cids[1], "rb") as held_open:
        assert held_open.read() == files[1].read_bytes()
        for cid, f in zip(cids[2:], files[2:], strict=True):
            assert (r.path / cid).read_bytes() == f.read_bytes()
        def evicted() -> int:
            status = json.loads(r.cli.run("status", "--json").stdout)
            return int(status.get("eviction", {}).get("evicted_blocks", 0))

        # Fetched blocks reach the index within a second; eviction follows in the same round.
        # Pinned and open blocks stay whatever the quota says; the rest is kept under it.
        bound = quota + 2 * (4 * CHUNK + 1024)
        assert wait_for(lambda: evicted() > 0 and store_bytes(r) <= bound), store_bytes(r)
        with Store.open(r.cli.home) as store:  # the open file's leaves are all still there
            data = files[1].read_bytes()
            for i in range(0, len(data), CHUNK):
                assert store.has(cidmod.make(cidmod.RAW, data[i : i + CHUNK]))
    status = json.loads(r.cli.run("status", "--json").stdout)
    assert status["eviction"]["worst_stall_ms"] < 50
    # All sources off: the pinned file still reads; an evicted one does not.
    holder.mount.stop()
    assert wait_for(lambda: not connected(r, 1))
    assert pinned.read_bytes() == files[0].read_bytes()
    with Store.open(r.cli.home) as store:  # unpinned, closed files were evicted from disk
        data = files[2].read_bytes()
        assert not any(store.has(cidmod.make(cidmod.RAW, data[i : i + CHUNK]))
                       for i in range(0, len(data), CHUNK))
        assert all(store.has(cidmod.make(cidmod.RAW, files[0].read_bytes()[i : i + CHUNK]))
                   for i in range(0, 4 * CHUNK, CHUNK))


@pytest.mark.parametrize("strategy", ["lru", "trust-based", "predictive"])
def test_each_policy_reads_correctly_under_pressure(nodes: Callable[..., Node],  # noqa: F811
                                                    tmp_path: Path, strategy: str) -> None:
    holder = nodes()
    files = [random_file(tmp_path / f"g{i}", 3 * CHUNK + 7, seed=70 + i) for i in range(5)]
    cids = holder.cli.add(*files)
    r = nodes(holder.addr, extra=f'[cache]\nquota_bytes = {2 * CHUNK}\nstrategy = "{strategy}"\n')
    assert wait_for(lambda: connected(r, 1))
    for _ in range(2):
        for cid, f in zip(cids, files, strict=True):
            out = subprocess.run(["cat", str(r.path / cid)], capture_output=True, timeout=60)
            assert out.stdout == f.read_bytes()
        time.sleep(1.5)  # a housekeeping round evicts between passes
    status = json.loads(r.cli.run("status", "--json").stdout)
    assert status["strategy"] == strategy and status["eviction"]["evicted_blocks"] > 0


def test_collaborative_pin_keeps_two_replicas(nodes: Callable[..., Node],  # noqa: F811
                                              tmp_path: Path) -> None:
    b = nodes()
    c = nodes(b.addr)
    a = nodes(b.addr, c.addr, extra="[pinning]\ncollaborative = true\nmin_peers = 2\n")
    assert wait_for(lambda: connected(a, 2))
    (cid,) = a.cli.add(random_file(tmp_path / "shared", 5 * CHUNK, seed=80))

    def holders() -> list[Node]:
        return [n for n in (b, c) if n.mount.pid and any(
            p["cid"] == cid and p["reason"] == "peer"
            for p in json.loads(n.cli.run("pins", "--json").stdout))]

    def replicas() -> int:
        return int(json.loads(a.cli.run("status", "--json").stdout)
                   .get("replicas", {}).get(cid, 0))

    assert wait_for(lambda: len(holders()) == 1 and replicas() == 2, timeout=30)
    (gone,) = holders()
    os.kill(gone.mount.pid, signal.SIGKILL)
    gone.mount.stop()
    gone.mount.pid = 0
    other = c if gone is b else b
    assert wait_for(lambda: holders() == [other] and replicas() == 2, timeout=40)


def pins_of(node: Node) -> dict[str, str]:
    return {p["cid"]: p["reason"] for p in json.loads(node.cli.run("pins", "--json").stdout)}


def test_auto_pin_from_trusted_peers_and_recent_reads(nodes: Callable[..., Node],  # noqa: F811
                                                      tmp_path: Path) -> None:
    a = nodes()
    b = nodes(a.addr, extra="[pinning]\nauto_pin_trust_threshold = 0.4\n")
    distrustful = nodes(a.addr, extra="[pinning]\nauto_pin_trust_threshold = 0.9\n"
                                      "recent_access_window = 30.0\n")
    assert wait_for(lambda: connected(b, 1) and connected(distrustful, 1))
    time.sleep(2)  # gossipsub mesh
    f = random_file(tmp_path / "announced", 3 * CHUNK, seed=90)
    (cid,) = a.cli.add(f)
    # b trusts a (0.5 >= 0.4): pins what a announces, and fetches it whole
    assert wait_for(lambda: pins_of(b).get(cid) == "auto", timeout=20)
    assert wait_for(lambda: xattr(b.path / cid, "local").stdout == "1.000")
    assert cid not in pins_of(distrustful)  # 0.5 < 0.9
    # distrustful pins what it reads, for as long as the recent-access window says
    other = random_file(tmp_path / "read", 2 * CHUNK, seed=91)
    (other_cid,) = a.cli.add(other)
    assert (distrustful.path / other_cid).read_bytes() == other.read_bytes()
    assert wait_for(lambda: pins_of(distrustful).get(other_cid) == "recent", timeout=10)
    assert cid not in pins_of(distrustful)  # never read there
