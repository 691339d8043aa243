"""Real mounts read with real tools: cat, dd, cp, sha256sum, ls, getfattr."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Casfs, Mount, alive, is_mounted, random_file, wait_for

pytestmark = pytest.mark.mount
CHUNK = 262144


def sh(*args: str | Path, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(a) for a in args], capture_output=True, timeout=120, **kw)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / "emptydir").mkdir()
    random_file(d / "big", 5 * CHUNK + 4321, seed=3)
    random_file(d / "sub" / "one chunk", CHUNK, seed=4)
    random_file(d / "sub" / "deeper" / "tiny", 7, seed=5)
    (d / "empty").write_bytes(b"")
    return d


def test_read_with_ordinary_tools(casfs: Casfs, mount: Mount, data: Path, tmp_path: Path
                                  ) -> None:
    big_cid, dir_cid = casfs.add(data / "big", data)
    big = (data / "big").read_bytes()
    mnt = mount.path
    assert sh("cat", mnt / big_cid).stdout == big
    sha = hashlib.sha256(big).hexdigest()
    assert sh("sha256sum", mnt / sha).stdout.split()[0].decode() == sha
    assert sh("cat", mnt / dir_cid / "sub" / "one chunk").stdout == \
        (data / "sub" / "one chunk").read_bytes()
    # dd at unaligned offsets, across block boundaries, and past the end
    for skip, count in [(0, 1), (CHUNK - 3, 10), (3 * CHUNK + 1, 2 * CHUNK), (len(big) - 5, 100)]:
        out = sh("dd", f"if={mnt / big_cid}", "bs=4096", f"skip={skip}", f"count={count}",
                 "iflag=skip_bytes,count_bytes", "status=none").stdout
        assert out == big[skip : skip + count], (skip, count)
    # cp -r of a whole tree, then compare with diff -r
    copy = tmp_path / "copy"
    assert sh("cp", "-r", mnt / dir_cid, copy).returncode == 0
    assert sh("diff", "-r", data, copy).returncode == 0
    # ls -l: sizes and types
    listing = sh("ls", "-l", mnt / dir_cid).stdout.decode()
    assert f" {len(big)} " in listing and listing.count("\nd") == 2
    assert os.stat(mnt / dir_cid / "empty").st_size == 0
    # ls of the root lists the roots held locally
    roots = set(sh("ls", mnt).stdout.decode().split())
    assert {big_cid, dir_cid} <= roots


def test_kernel_readahead_is_raised(mount: Mount) -> None:
    from casfs.mount import _device_of

    dev = _device_of(mount.path)
    if os.getuid() != 0:
        pytest.fail("CI runs as root; raising read_ahead_kb needs root")
    assert Path(f"/sys/class/bdi/{dev}/read_ahead_kb").read_text().strip() == "1024"


def test_xattrs(casfs: Casfs, mount: Mount, data: Path) -> None:
    (cid,) = casfs.add(data / "big")
    out = sh("getfattr", "-d", mount.path / cid).stdout.decode()
    assert f'user.cas.cid="{cid}"' in out
    assert f'user.cas.size="{(data / "big").stat().st_size}"' in out
    assert f'user.cas.sha256="{hashlib.sha256((data / "big").read_bytes()).hexdigest()}"' in out
    res = sh("getfattr", "-n", "user.cas.nope", mount.path / cid)
    assert res.returncode != 0 and b"No such attribute" in res.stderr


def test_many_readers_at_once(casfs: Casfs, mount: Mount, tmp_path: Path) -> None:
    f = random_file(tmp_path / "f", 40 * CHUNK + 17, seed=9)
    (cid,) = casfs.add(f)
    want = hashlib.sha256(f.read_bytes()).hexdigest()

    def read(i: int) -> str:
        if i % 2:  # half read the whole file, half start from an offset with dd
            return sh("sha256sum", mount.path / cid).stdout.split()[0].decode()
        out = sh("dd", f"if={mount.path / cid}", "bs=65536", "status=none").stdout
        return hashlib.sha256(out).hexdigest()

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(read, range(8))) == {want}


def test_small_reads_push_whole_blocks_into_the_page_cache(casfs: Casfs, mount: Mount,
                                                          tmp_path: Path) -> None:
    """Random 4 KiB reads: the rest of each block goes to the kernel; every byte still right."""
    f = random_file(tmp_path / "f", 6 * CHUNK + 999, seed=12)
    (cid,) = casfs.add(f)
    want = f.read_bytes()
    rng = random.Random(5)
    fd = os.open(mount.path / cid, os.O_RDONLY)
    try:
        for _ in range(300):  # later reads are served from pushed pages: compare them all
            off = rng.randrange(len(want))
            assert os.pread(fd, 4096, off) == want[off : off + 4096], off
    finally:
        os.close(fd)
    assert sh("cmp", f, mount.path / cid).returncode == 0

    def pushed() -> int:
        status = json.loads(casfs.run("status", "--json").stdout)
        return int(status["cache"]["page_cache_pushed"])

    assert wait_for(lambda: pushed() >= CHUNK)  # status.json is rewritten every second


def test_bad_names_and_writes(casfs: Casfs, mount: Mount, data: Path) -> None:
    (cid,) = casfs.add(data / "big")
    mnt = mount.path
    for name in ["hello", "Qmnotacid", "b" + "a" * 58, "0" * 63]:
        t = time.perf_counter()
        with pytest.raises(FileNotFoundError):
            os.stat(mnt / name)
        assert time.perf_counter() - t < 0.5
    nowhere = "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"  # sha256("nowhere")
    with pytest.raises(FileNotFoundError):
        os.stat(mnt / nowhere)
    for attempt in (lambda: open(mnt / cid, "wb"), lambda: os.mkdir(mnt / "x"),
                    lambda: os.unlink(mnt / cid), lambda: open(mnt / "new", "w")):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno == errno.EROFS


def test_content_added_while_mounted_appears(casfs: Casfs, mount: Mount, tmp_path: Path) -> None:
    f = random_file(tmp_path / "late", 1234, seed=11)
    (cid,) = casfs.add(f)
    assert (mount.path / cid).read_bytes() == f.read_bytes()
    assert cid in os.listdir(mount.path)


@pytest.mark.expect_warnings
def test_damaged_block_gives_eio_for_its_range_only(casfs: Casfs, tmp_path: Path, data: Path
                                                    ) -> None:
    (cid,) = casfs.add(data / "big")
    big = (data / "big").read_bytes()
    # Damage the third leaf on disk (before any mount has it in its page cache).
    from casfs import cid as cidmod
    from casfs.store import Store

    leaf = cidmod.make(cidmod.RAW, big[2 * CHUNK : 3 * CHUNK])
    with Store.open(casfs.home) as store:
        path = store.path(leaf)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(-1000, os.SEEK_END)
        fh.write(b"\x00" * 8)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = Mount(casfs, mnt)
    m.start()
    try:
        fd = os.open(mnt / cid, os.O_RDONLY)
        try:
            assert os.pread(fd, 4096, 0) == big[:4096]
            with pytest.raises(OSError) as e:
                os.pread(fd, 4096, 3 * CHUNK - 4096)
            assert e.value.errno == errno.EIO
            assert os.pread(fd, 4096, 4 * CHUNK) == big[4 * CHUNK : 4 * CHUNK + 4096]
        finally:
            os.close(fd)
    finally:
        m.stop()


def test_signals_and_fusermount_unmount(casfs: Casfs, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for how in ("SIGTERM", "SIGINT", "fusermount3"):
        m = Mount(casfs, mnt)
        m.start()
        assert is_mounted(mnt)
        if how == "fusermount3":
            assert sh("fusermount3", "-u", mnt).returncode == 0
        else:
            os.kill(m.pid, getattr(signal, how))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (is_mounted(mnt) or alive(m.pid)):
            time.sleep(0.05)
        assert not is_mounted(mnt), how
        assert not alive(m.pid), how
    assert "Traceback" not in m.log()


def test_mount_cli_errors(casfs: Casfs, tmp_path: Path) -> None:
    res = casfs.run("mount", tmp_path / "missing", check=False)
    assert res.returncode != 0 and "does not exist" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = Mount(casfs, mnt)
    m.start()
    try:
        res = casfs.run("mount", mnt, check=False)
        assert res.returncode != 0 and "already a mount point" in res.stderr
        os.kill(m.pid, signal.SIGKILL)  # leaves a stale mount behind
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and alive(m.pid):
            time.sleep(0.05)
        res = casfs.run("mount", mnt, check=False)
        assert res.returncode != 0 and "stale mount" in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    finally:
        m.stop()
    res = casfs.run("umount", mnt, check=False)
    assert res.returncode != 0 and "not mounted" in res.stderr
