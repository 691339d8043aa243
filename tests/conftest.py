"""Shared fixtures: a temp state directory, the casfs CLI as a subprocess, real mounts."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

if (HERE / "jsipfs.py").exists():
    from jsipfs import jsipfs  # noqa: E402,F401  (session fixture: the real js-ipfs daemon)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "expect_warnings: the test provokes casfs warnings")


@pytest.fixture(autouse=True)
def no_unexpected_warnings(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
                           ) -> Iterator[None]:
    """Fail a test on a casfs warning it did not ask for (as s3ql's tests do)."""
    caplog.set_level(logging.INFO, logger="casfs")
    yield
    if request.node.get_closest_marker("expect_warnings"):
        return
    bad = [r for r in caplog.get_records("call")
           if r.name.startswith("casfs") and r.levelno >= logging.WARNING]
    assert not bad, f"unexpected log warnings: {[r.getMessage() for r in bad]}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


class Casfs:
    """Runs the real `casfs` command against one state directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "CASFS_HOME": str(home)}

    def run(self, *args: str | Path, check: bool = True, timeout: float = 120,
            **kw: object) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "casfs", *map(str, args)], env=self.env,
                             capture_output=True, text=True, timeout=timeout, **kw)
        if check and res.returncode != 0:
            raise AssertionError(f"casfs {args} failed ({res.returncode}): {res.stderr}")
        return res

    def add(self, *paths: Path) -> list[str]:
        return self.run("add", "--quiet", *paths).stdout.split()

    def cat(self, name: str) -> bytes:
        res = subprocess.run([sys.executable, "-m", "casfs", "cat", name], env=self.env,
                             capture_output=True, timeout=120, check=True)
        return res.stdout


@pytest.fixture
def casfs(home: Path) -> Casfs:
    return Casfs(home)


def alive(pid: int) -> bool:
    """True while pid runs; a zombie (nobody reaped it yet) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def is_mounted(path: Path) -> bool:
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


class Mount:
    def __init__(self, cli: Casfs, path: Path, *args: str) -> None:
        self.cli = cli
        self.path = path
        self.args = args
        self.pid = 0

    def start(self) -> None:
        self.cli.run("mount", *self.args, self.path, timeout=60)
        self.pid = int((self.cli.home / "mount.pid").read_text())

    def stop(self) -> None:
        if is_mounted(self.path):
            self.cli.run("umount", self.path, check=False, timeout=30)
        if is_mounted(self.path):
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], check=False)
        deadline = time.monotonic() + 10
        while self.pid and time.monotonic() < deadline:
            if not alive(self.pid):
                break
            time.sleep(0.02)
        else:
            if self.pid:
                os.kill(self.pid, signal.SIGKILL)

    def log(self) -> str:
        path = self.cli.home / "casfs.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def mount(casfs: Casfs, tmp_path: Path) -> Iterator[Mount]:
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse is missing: mount tests need FUSE")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = Mount(casfs, mnt)
    m.start()
    try:
        yield m
    finally:
        m.stop()
    assert "Traceback" not in m.log(), m.log()


@pytest.fixture
def mount_factory(tmp_path: Path) -> Iterator[Callable[..., Mount]]:
    """Mounts with options: mount_factory(casfs, "--ipfs-api", addr) -> started Mount."""
    mounts: list[Mount] = []

    def make(cli: Casfs, *args: str) -> Mount:
        mnt = tmp_path / f"mnt{len(mounts)}"
        mnt.mkdir()
        m = Mount(cli, mnt, *args)
        m.start()
        mounts.append(m)
        return m

    yield make
    for m in mounts:
        m.stop()
    for m in mounts:
        assert "Traceback" not in m.log(), m.log()


def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll cond until it holds or timeout passes (bounded: never loops forever)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def random_file(path: Path, size: int, seed: int = 0) -> Path:
    import random

    rng = random.Random(seed)
    path.write_bytes(rng.randbytes(size))
    return path
