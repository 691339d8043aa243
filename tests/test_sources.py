"""The IPFS node and gateway links against the real js-ipfs daemon, and liars in front of it."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Casfs, Mount, random_file, wait_for
from jsipfs import JsIpfs
from liars import Proxy, Silent

pytestmark = [pytest.mark.ipfs, pytest.mark.mount]
CHUNK = 262144


def only_in_ipfs(jsipfs: JsIpfs, tmp_path: Path, size: int, seed: int) -> tuple[str, bytes]:
    f = random_file(tmp_path / f"f{seed}", size, seed=seed)
    return jsipfs.add_path(f), f.read_bytes()


def test_reads_through_ipfs_link(casfs: Casfs, jsipfs: JsIpfs, tmp_path: Path,
                                 mount_factory: Callable[..., Mount]) -> None:
    cid, data = only_in_ipfs(jsipfs, tmp_path, 9 * CHUNK + 77, seed=21)
    m = mount_factory(casfs, "--ipfs-api", jsipfs.api_multiaddr)
    out = subprocess.run(["cat", str(m.path / cid)], capture_output=True, timeout=60).stdout
    assert out == data
    src = subprocess.run(["getfattr", "--only-values", "-n", "user.cas.source",
                          str(m.path / cid)], capture_output=True, text=True).stdout
    assert "ipfs" in src
    deadline = time.monotonic() + 5  # the mount publishes its statistics every second
    while True:
        status = json.loads(casfs.run("status", "--json").stdout)
        (ipfs,) = [v for k, v in status["sources"].items() if k.startswith("ipfs")]
        if ipfs["bytes"] >= len(data) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ipfs["hits"] >= 1 and ipfs["bytes"] >= len(data)


def test_reads_through_gateway_link_alone(casfs: Casfs, jsipfs: JsIpfs, tmp_path: Path,
                                          mount_factory: Callable[..., Mount]) -> None:
    cid, data = only_in_ipfs(jsipfs, tmp_path, 13 * CHUNK + 3, seed=22)  # > 2 MiB
    small, small_data = only_in_ipfs(jsipfs, tmp_path, 1000, seed=23)
    m = mount_factory(casfs, "--gateway", jsipfs.gateway_url)
    assert (m.path / cid).read_bytes() == data
    assert (m.path / small).read_bytes() == small_data


@pytest.mark.expect_warnings
@pytest.mark.parametrize("mode", ["flip", "truncate"])
def test_lying_gateway_never_reaches_a_reader(casfs: Casfs, jsipfs: JsIpfs, tmp_path: Path,
                                              mount_factory: Callable[..., Mount],
                                              mode: str) -> None:
    cid, data = only_in_ipfs(jsipfs, tmp_path, 3 * CHUNK + 11, seed=24)
    with Proxy(jsipfs.gateway_url, mode) as liar:
        m = mount_factory(casfs, "--gateway", liar.url, "--deadline", "5")
        with pytest.raises(OSError) as e:  # gateway alone: nothing verifiable → no file
            (m.path / cid).read_bytes()
        assert e.value.errno in (errno.ENOENT, errno.EIO)
        assert liar.requests > 0

        def distrusted() -> bool:  # the verdict is kept for later mounts
            with sqlite3.connect(casfs.home / "index.sqlite") as db:
                row = db.execute("SELECT score FROM trust WHERE id = ?",
                                 (f"source:gateway {liar.url}",)).fetchone()
            return row is not None and row[0] < 0.5

        assert wait_for(distrusted, timeout=5)
    # With an honest IPFS node behind the liar, the read falls back and is byte-exact.
    home2 = tmp_path / "home2"
    home2.mkdir()
    other = Casfs(home2)
    (home2 / "config.toml").write_text(f'[chain]\norder = ["gateway", "ipfs"]\n'
                                       f'[ipfs]\napi = "{jsipfs.api_multiaddr}"\n')
    with Proxy(jsipfs.gateway_url, mode) as liar:
        m = mount_factory(other, "--gateway", liar.url)
        assert (m.path / cid).read_bytes() == data
        assert liar.requests > 0
    assert "corrupt" in m.log() or "does not" in m.log()


@pytest.mark.expect_warnings
def test_lying_rpc_endpoint(casfs: Casfs, jsipfs: JsIpfs, tmp_path: Path,
                            mount_factory: Callable[..., Mount]) -> None:
    cid, data = only_in_ipfs(jsipfs, tmp_path, 2 * CHUNK + 5, seed=25)
    with Proxy(jsipfs.api_url, "flip") as liar:
        m = mount_factory(casfs, "--ipfs-api", liar.multiaddr, "--gateway", jsipfs.gateway_url)
        assert (m.path / cid).read_bytes() == data  # every block failed at the liar
        assert liar.requests > 0
    status = json.loads(casfs.run("status", "--json").stdout) if m.pid else {}
    del status


@pytest.mark.expect_warnings
def test_silent_source_gives_eio_by_the_deadline(casfs: Casfs, tmp_path: Path,
                                                 mount_factory: Callable[..., Mount]) -> None:
    local = random_file(tmp_path / "local", 3 * CHUNK, seed=26)
    (local_cid,) = casfs.add(local)
    # A two-leaf file whose root is local but whose leaves are nowhere but "the network".
    from casfs import cid as cidmod
    from casfs.store import Store

    remote = random_file(tmp_path / "remote", 2 * CHUNK, seed=27)
    (remote_cid,) = casfs.add(remote)
    with Store.open(casfs.home) as store:
        store.drop(cidmod.make(cidmod.RAW, remote.read_bytes()[:CHUNK]))
    with Silent() as silent:
        m = mount_factory(casfs, "--ipfs-api", silent.multiaddr, "--deadline", "2")
        fd = os.open(m.path / remote_cid, os.O_RDONLY)
        t = time.monotonic()
        try:
            with pytest.raises(OSError) as e:
                os.pread(fd, 4096, 0)
        finally:
            os.close(fd)
        assert e.value.errno == errno.EIO
        assert time.monotonic() - t < 4
        t = time.monotonic()
        assert (m.path / local_cid).read_bytes() == local.read_bytes()  # others still fine
        assert time.monotonic() - t < 1
        nowhere = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"
        t = time.monotonic()
        with pytest.raises(FileNotFoundError):
            os.stat(m.path / nowhere)
        assert time.monotonic() - t < 4


@pytest.mark.expect_warnings
def test_ipfs_node_down_at_mount_then_up(casfs: Casfs, tmp_path: Path,
                                         mount_factory: Callable[..., Mount]) -> None:
    node = JsIpfs(tmp_path / "ipfs2")
    node.start()
    try:
        cid, data = only_in_ipfs(node, tmp_path, 2 * CHUNK + 9, seed=28)
        node.stop()
        (casfs.home / "config.toml").write_text("[ipfs]\nretry_after = 0.5\n")
        m = mount_factory(casfs, "--ipfs-api", node.api_multiaddr, "--deadline", "3")
        with pytest.raises(FileNotFoundError):
            os.stat(m.path / cid)
        node.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                got = (m.path / cid).read_bytes()
                break
            except FileNotFoundError:
                time.sleep(0.5)
        assert got == data
        assert "unreachable" in m.log() and "reachable again" in m.log()
    finally:
        node.stop()
