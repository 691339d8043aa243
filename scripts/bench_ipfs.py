#!/usr/bin/env python3
"""IPFS benchmark: casfs reading through its discovery chain against `ipfs cat`, in one run.

One js-ipfs daemon (tests/jsipfs.py) is started in a temp dir under /var/tmp. A random file is
added to js-ipfs only (CIDv1, raw leaves), then, per run:

  a) baseline: `ipfs cat` over the RPC API (curl POST /api/v0/cat to /dev/null)
  b) casfs with the IPFS link (`casfs mount --ipfs-api`): cold `dd bs=1M` of MNT/<cid>
  c) casfs with the gateway link only (`casfs mount --gateway`): the same read
  d) anchor: ipfs-api-mount from PyPI (a Python FUSE mount over the same RPC API), installed
     into its own venv under ~/.cache/casfs-bench; a directory root wraps the file

Each casfs mount gets a fresh, empty CASFS_HOME, so every block comes through the chain. All
rates are wall-clock MB/s of the whole read (including the first lookup), and every ratio
divides by the `cat` median of the same invocation, because absolute numbers on a shared 2-core
machine are noisy while ratios hold. Medians over --runs are reported.

Exit status: 0 when both casfs metrics were measured (a missed target shows as MISS), 1 when
one could not be. The anchor never fails the benchmark: its row then says why it is missing.

    scripts/bench_ipfs.py [--size 256MiB] [--runs 3] [--no-anchor]

Requires root, /dev/fuse, fusermount3, curl, dd and js-ipfs (scripts/install-jsipfs.sh runs
on demand).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import benchlib
from benchlib import BenchError, Metric, MiB, log

sys.path.insert(0, str(benchlib.REPO / "tests"))

from jsipfs import JsIpfs, JsIpfsError  # noqa: E402  (tests/ is not a package)

ANCHOR_VENV = benchlib.CACHE_DIR / "ipfs-api-mount-venv"
ANCHOR_PACKAGE = "ipfs-api-mount==0.4.1"  # the version FACTS.md measured
ANCHOR_FILE_NAME = "data.bin"

MOUNT_TIMEOUT_S = 60.0
APT_TIMEOUT_S = 600.0
STATUS_WAIT_S = 5.0  # the mount publishes its statistics every second
# Reads slower than benchlib.MIN_IO_RATE (5 MB/s) count as hung; the gateway path may be slow.


# --------------------------------------------------------------------------- mounts


@dataclass
class Mount:
    path: Path
    pid: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)


class Mounts:
    """Tracks live mounts so that every exit path unmounts them and stops their processes."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.live: list[Mount] = []
        self.count = 0

    def new_point(self, label: str) -> Path:
        self.count += 1
        mnt = self.scratch / f"mnt-{label}-{self.count}"
        mnt.mkdir(parents=True)
        return mnt

    @contextlib.contextmanager
    def casfs(self, label: str, link_args: list[str]) -> Iterator[Mount]:
        """A casfs mount with a fresh, empty CASFS_HOME (every block must come via the chain)."""
        mnt = self.new_point(label)
        home = self.scratch / f"home-{label}-{self.count}"
        home.mkdir()
        env = {**os.environ, "CASFS_HOME": str(home)}
        log = self.scratch / f"casfs-{label}-{self.count}.log"
        pid = benchlib.mount_casfs(mnt, env, log, MOUNT_TIMEOUT_S, link_args)
        mount = Mount(mnt, pid, log, env=env)
        self.live.append(mount)
        try:
            yield mount
        finally:
            self.stop(mount)

    @contextlib.contextmanager
    def anchor(self, exe: Path, api_port: int, root: str) -> Iterator[Mount]:
        """ipfs-api-mount in the foreground as our child, stopped by unmounting it."""
        mnt = self.new_point("anchor")
        log = self.scratch / f"anchor-{self.count}.log"
        cmd = [str(exe), "--api-host", "127.0.0.1", "--api-port", str(api_port), root, str(mnt)]
        proc = benchlib.start_fuse_child(cmd, mnt, log, MOUNT_TIMEOUT_S, new_session=True)
        mount = Mount(mnt, proc.pid, log, proc=proc)
        self.live.append(mount)
        try:
            # The root's stat returns only once the daemon answers, so the read starts warm-free.
            benchlib.run_checked(["stat", "-c", "%i", str(mnt)], MOUNT_TIMEOUT_S)
            yield mount
        finally:
            self.stop(mount)

    def stop(self, mount: Mount) -> None:
        if mount not in self.live:
            return
        self.live.remove(mount)
        if mount.proc is None:
            benchlib.casfs_unmount(mount.path, mount.env, mount.log, mount.pid)
        else:
            benchlib.fusermount_u(mount.path)
            benchlib.reap(mount.proc, benchlib.UNMOUNT_TIMEOUT_S)

    def cleanup(self) -> None:
        benchlib.stop_all(self.live, self.stop, self.scratch)


# --------------------------------------------------------------------------- measurements


def timed_cat(api_url: str, cid: str, nbytes: int) -> float:
    """`ipfs cat` over the RPC API with curl to /dev/null; returns wall-clock MB/s."""
    benchlib.prefault(2 * nbytes + benchlib.PREFAULT_MARGIN)
    timeout = benchlib.io_timeout(nbytes)
    cmd = [
        "curl",
        "-s",
        "-X",
        "POST",
        f"{api_url}/api/v0/cat?arg={cid}",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "--max-time",
        str(int(timeout)),
    ]
    start = time.perf_counter()
    res = benchlib.run_checked(cmd, timeout + 10)
    seconds = time.perf_counter() - start
    code, size = res.stdout.split()
    if code != "200" or int(size) != nbytes:
        raise BenchError(f"cat answered HTTP {code} with {size} bytes, expected {nbytes}")
    return nbytes / seconds / 1e6


def casfs_sources(mount: Mount, nbytes: int) -> dict[str, object]:
    """`casfs status --json` sources, once the mount has published the whole read (≤ 5 s)."""
    sources: dict[str, object] = {}
    deadline = time.monotonic() + STATUS_WAIT_S
    for _ in range(int(STATUS_WAIT_S / 0.2) + 2):
        res = benchlib.run_checked([str(benchlib.CASFS_EXE), "status", "--json"], 30, env=mount.env)
        sources = json.loads(res.stdout).get("sources", {})
        fetched = sum(int(v.get("bytes", 0)) for v in sources.values() if isinstance(v, dict))
        if fetched >= nbytes or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return sources


# --------------------------------------------------------------------------- the anchor


def find_libfuse2() -> bool:
    return ctypes.util.find_library("fuse") is not None


def prepare_anchor() -> Path:
    """Install ipfs-api-mount into its own venv (once) and make it work with js-ipfs.

    Returns the path of its `ipfs-api-mount` script. Raises BenchError saying why not.
    """
    exe = ANCHOR_VENV / "bin" / "ipfs-api-mount"
    if not exe.exists():
        benchlib.venv_install(ANCHOR_VENV, [ANCHOR_PACKAGE])
    if not exe.exists():
        raise BenchError(f"pip installed {ANCHOR_PACKAGE} but {exe} is missing")
    # fusepy loads libfuse 2 (libfuse.so.2) by ctypes; Debian's fuse3 does not bring it.
    if not find_libfuse2():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "libfuse2"]
        try:
            benchlib.run_checked(install, APT_TIMEOUT_S, env=env)
        except BenchError:
            # A fresh machine's package lists may be empty or old (FACTS.md, "Installing").
            benchlib.run_checked(["apt-get", "update", "-q"], APT_TIMEOUT_S, env=env)
            benchlib.run_checked(install, APT_TIMEOUT_S, env=env)
        if not find_libfuse2():
            raise BenchError("libfuse2 installed but libfuse.so.2 is still not found")
    # Found by path, not by import: importing the package loads fusepy, which needs libfuse.
    found = sorted(ANCHOR_VENV.glob("lib/python*/site-packages/ipfs_api_mount/commands.py"))
    if len(found) != 1:
        raise BenchError(f"expected one ipfs_api_mount/commands.py in {ANCHOR_VENV}: {found}")
    # ipfshttpclient.connect() refuses js-ipfs's version (FACTS.md); Client() skips that check.
    if "ipfshttpclient.connect(" in found[0].read_text():
        sed = "s/ipfshttpclient\\.connect(/ipfshttpclient.Client(/"
        benchlib.run_checked(["sed", "-i", sed, str(found[0])], 30)
        if "ipfshttpclient.connect(" in found[0].read_text():
            raise BenchError(f"could not patch connect( into Client( in {found[0]}")
    return exe


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Bench:
    args: argparse.Namespace
    scratch: Path
    mounts: Mounts
    node: JsIpfs
    cid: str
    sha: str
    dir_cid: str = ""
    anchor_exe: Path | None = None
    anchor_skip: str = ""  # why the anchor is not measured
    sources: dict[str, dict[str, object]] = field(default_factory=dict)


def measure_cat(b: Bench, metric: Metric) -> None:
    metric.values.append(timed_cat(b.node.api_url, b.cid, b.args.size))


def casfs_log_problems(mount: Mount, lines: int = 3) -> str:
    """The last WARNING/ERROR lines of the mount's log, to say why a read failed."""
    log = Path(mount.env["CASFS_HOME"]) / "casfs.log"
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no casfs.log)"
    found = [ln for ln in text.splitlines() if " WARNING " in ln or " ERROR " in ln]
    return " | ".join(found[-lines:]) or "(nothing logged)"


def measure_casfs(b: Bench, metric: Metric, label: str, link_args: list[str], last: bool) -> None:
    size = b.args.size
    with b.mounts.casfs(label, link_args) as mount:
        try:
            metric.values.append(benchlib.timed_dd(mount.path / b.cid, size))
        except BenchError as exc:
            raise BenchError(f"{exc}; casfs.log: {casfs_log_problems(mount)}") from exc
        finally:
            if last:
                # Read the mount's status before it goes away (on failure too: it says why).
                b.sources[label] = dict(casfs_sources(mount, size))
        if last:
            # A warm re-read: the kernel keeps the pages of immutable files.
            metric.check_file(mount.path / b.cid, b.sha, size)


def measure_anchor(b: Bench, metric: Metric, last: bool) -> None:
    assert b.anchor_exe is not None
    size = b.args.size
    # An IPFS path, not a bare CID: the anchor resolves its root and js-ipfs's `resolve`
    # rejects a bare CID (FACTS.md).
    root = f"/ipfs/{b.dir_cid}"
    with b.mounts.anchor(b.anchor_exe, b.node.api_port, root) as mount:
        metric.values.append(benchlib.timed_dd(mount.path / ANCHOR_FILE_NAME, size))
        if last:
            metric.check_file(mount.path / ANCHOR_FILE_NAME, b.sha, size)


def setup_anchor(b: Bench, data: Path) -> None:
    """Install the anchor and add the file wrapped in a directory (its root must be a dir)."""
    try:
        b.anchor_exe = prepare_anchor()
        wrap = b.scratch / "wrap"
        wrap.mkdir()
        os.link(data, wrap / ANCHOR_FILE_NAME)  # a hard link: no second copy on disk
        b.dir_cid = b.node.add_path(wrap)
    except (BenchError, JsIpfsError, OSError) as exc:
        b.anchor_skip = f"not measured: {exc}"


def fmt(value: float | None) -> str:
    return f"{value:.1f}" if value else "-"


def print_table(b: Bench, base: Metric, metrics: list[Metric]) -> bool:
    """Print the table; returns True when every casfs metric was measured in every run."""
    base_mb = base.median()
    rows = [(base.title, fmt(base_mb), fmt(base_mb), "1.00" if base_mb else "-", "baseline")]
    complete = bool(base_mb) and not base.errors
    for m in metrics:
        is_anchor = m.title.startswith("ipfs-api-mount")  # the anchor never fails the run
        if is_anchor and b.anchor_skip:
            rows.append((m.title, "-", fmt(base_mb), "-", m.target))
            continue
        if not m.values or not base_mb:
            rows.append((m.title, "FAILED", fmt(base_mb), "-", m.target))
            if not is_anchor:
                complete = False
            continue
        if m.errors and not is_anchor:
            complete = False
        mb = statistics.median(m.values)
        ratio = mb / base_mb
        verdict = m.target
        if m.threshold is not None:
            verdict += "  OK" if ratio >= m.threshold else "  MISS"
        rows.append((m.title, fmt(mb), fmt(base_mb), f"{ratio:.2f}", verdict))
    benchlib.print_ruled_table(
        f"casfs IPFS benchmark: {b.args.size / MiB:.0f} MiB random file, medians of "
        f"{b.args.runs} run(s); baseline = ipfs cat over the RPC API (js-ipfs)",
        ("metric", "MB/s", "baseline MB/s", "ratio", "target"),
        rows,
    )
    return complete


def print_details(b: Bench, base: Metric, metrics: list[Metric]) -> None:
    print()
    print("per run (MB/s):")
    for m in [base, *metrics]:
        m.print_runs(m.title)
    if b.anchor_skip:
        print(f"  ipfs-api-mount: {b.anchor_skip}")
    print()
    print(f"file CID {b.cid}" + (f"; anchor directory root {b.dir_cid}" if b.dir_cid else ""))
    for label, sources in b.sources.items():
        print(f"casfs status --json sources, last run, {label} mount (before unmounting):")
        print(json.dumps(sources, indent=2, sort_keys=True))


def run_all(b: Bench) -> bool:
    base = Metric("ipfs cat (RPC API, curl)", "baseline", None)
    casfs_ipfs = Metric("casfs --ipfs-api, cold dd", ">= 1.00 x cat", 1.0)
    casfs_gw = Metric("casfs --gateway only, cold dd", "info (gateway link)", None)
    anchor = Metric("ipfs-api-mount, cold dd", "anchor (FACTS: ~0.17)", None)
    metrics = [casfs_ipfs, casfs_gw]
    if not b.args.no_anchor:
        metrics.append(anchor)
    api = ["--ipfs-api", b.node.api_multiaddr]
    gateway = ["--gateway", b.node.gateway_url]
    catch = (BenchError, JsIpfsError, OSError, ValueError)
    started = time.monotonic()
    for run in range(b.args.runs):
        last = run == b.args.runs - 1
        log(f"run {run + 1}/{b.args.runs} ({time.monotonic() - started:.0f} s)")
        benchlib.attempt(base, run, measure_cat, b, base, catch=catch)
        benchlib.attempt(
            casfs_ipfs, run, measure_casfs, b, casfs_ipfs, "ipfs", api, last, catch=catch
        )
        benchlib.attempt(
            casfs_gw, run, measure_casfs, b, casfs_gw, "gateway", gateway, last, catch=catch
        )
        if not b.args.no_anchor and not b.anchor_skip:
            benchlib.attempt(anchor, run, measure_anchor, b, anchor, last, catch=catch)
    ok = print_table(b, base, metrics)
    print_details(b, base, metrics)
    return ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--size", type=benchlib.parse_size, default=256 * MiB, help="file size (256MiB)")
    p.add_argument("--runs", type=int, default=3, help="runs; medians are reported (3)")
    p.add_argument("--no-anchor", action="store_true", help="skip ipfs-api-mount")
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 20:
        p.error("--runs must be 1..20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        benchlib.check_system(
            "FUSE mounts, read_ahead_kb", ["fusermount3", "curl", "dd"], [benchlib.CASFS_EXE]
        )
    except BenchError as exc:
        log(f"bench_ipfs: {exc}")
        return 1
    with benchlib.scratch_dir("casfs-bench-ipfs-") as scratch:
        mounts = Mounts(scratch)
        node = JsIpfs(scratch / "jsipfs")
        try:
            data = scratch / "data.bin"
            log(f"writing {args.size / MiB:.0f} MiB of random data")
            sha = benchlib.write_random(data, args.size)
            node.start()
            t0 = time.monotonic()
            cid = node.add_path(data)
            log(f"added to js-ipfs in {time.monotonic() - t0:.1f} s: {cid}")
            b = Bench(args, scratch, mounts, node, cid, sha)
            if not args.no_anchor:
                setup_anchor(b, data)
                if b.anchor_skip:
                    log(f"ipfs-api-mount {b.anchor_skip}")
            return 0 if run_all(b) else 1
        except (BenchError, JsIpfsError, OSError) as exc:
            log(f"bench_ipfs: {exc}")
            return 1
        finally:
            mounts.cleanup()
            node.stop()


if __name__ == "__main__":
    sys.exit(main())
