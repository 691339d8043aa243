"""kill -9 at any moment loses nothing that was reported stored and corrupts nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Casfs, Mount, random_file

CHUNK = 262144


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8])
def test_kill_during_add_then_verify_and_readd(casfs: Casfs, tmp_path: Path, delay: float
                                               ) -> None:
    big = random_file(tmp_path / "big", 96 << 20, seed=int(delay * 100))
    earlier = random_file(tmp_path / "earlier", 3 * CHUNK + 5, seed=1)
    (earlier_cid,) = casfs.add(earlier)
    proc = subprocess.Popen([sys.executable, "-m", "casfs", "add", "--quiet", str(big)],
                            env=casfs.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    res = casfs.run("verify", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 bad, 0 incomplete" in res.stdout
    assert casfs.cat(earlier_cid) == earlier.read_bytes()  # what was stored before survives
    (cid,) = casfs.add(big)
    assert casfs.cat(cid) == big.read_bytes()
    assert casfs.run("verify").returncode == 0


def test_kill_mount_during_reads_keeps_store_intact(casfs: Casfs, tmp_path: Path) -> None:
    f = random_file(tmp_path / "f", 64 * CHUNK, seed=7)
    (cid,) = casfs.add(f)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = Mount(casfs, mnt)
    m.start()
    reader = subprocess.Popen(["sha256sum", str(mnt / cid)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(0.05)
    os.kill(m.pid, signal.SIGKILL)
    reader.wait(timeout=20)
    m.stop()
    assert casfs.run("verify").returncode == 0
    m = Mount(casfs, mnt)
    m.start()
    try:
        assert (mnt / cid).read_bytes() == f.read_bytes()
    finally:
        m.stop()
