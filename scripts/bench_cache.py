#!/usr/bin/env python3
"""Cache benchmark: casfs readers with a store quota against readers without, in one run.

A holder node H adds a random file of --size and stays mounted. Every measurement uses a fresh
reader node (empty CASFS_HOME) bootstrapped to H only, so every block comes from H. Per run
(medians over --runs are reported), no quota vs quota (10% of --size, --strategy):

  1) sequential: cold `dd bs=1M` of MNT/<cid>, MB/s; ratio, target >= 0.8
  2) random: --reads 4 KiB os.pread()s at seeded offsets on one fd, reads/s; ratio, target >= 0.8

and from `casfs status --json` of the quota readers once the file is closed and housekeeping
has run: the worst eviction stall (max, target <= 50 ms), the bytes evicted, and block_bytes
(max, target <= quota + 10% of --size); block_bytes while the file is still open is reported.
The scratch dir under /var/tmp is deleted at the end; mounts and daemons are stopped on every
exit path. Exit status 0 when every metric was measured (a missed target shows as MISS).

    scripts/bench_cache.py [--size 256MiB] [--runs 3] [--strategy lru] [--reads 2000]

Requires root, /dev/fuse, fusermount3, dd, and .venv with casfs (scripts/install.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
from benchlib import BenchError, Interrupted, Metric, MiB, log

STRATEGIES = ("lru", "trust-based", "predictive")
RATIO_TARGET = 0.8
STALL_TARGET_MS = 50.0
QUOTA_SHARE = 0.10  # quota = 10% of the file: the reader must evict ~90% of what it fetches
SLACK_SHARE = 0.10  # block_bytes may exceed the quota by this share of the file
READ_SIZE = 4096

MOUNT_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 30.0
ADD_TIMEOUT_S = 600.0
PEER_WAIT_S = 30.0
BLOOM_WAIT_S = 2.5  # after the peer shows up: its hello (Bloom filter) has to arrive too
# Housekeeping runs every second: records fetched blocks in the index, evicts, writes the
# status file. Two ticks and a bit make sure a sample reflects what the read left behind.
SETTLE_S = 2.5


@dataclass
class Node:
    """A casfs node: its own CASFS_HOME and mount point; mounted, its peer node runs there."""

    home: Path
    mnt: Path
    pid: int = 0  # of the mount daemon

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CASFS_HOME": str(self.home)}

    @property
    def log(self) -> Path:
        return self.home.with_suffix(".log")  # outside home, which a reader's exit deletes

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT_S) -> str:
        return benchlib.run_checked([str(benchlib.CASFS_EXE), *args], timeout, env=self.env).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))


@dataclass
class Bench:
    args: argparse.Namespace
    scratch: Path
    quota: int
    data: Path
    sha: str = ""
    offsets: list[int] = field(default_factory=list)
    want_reads_sha: str = ""  # sha256 of the bytes at offsets, concatenated
    cid: str = ""
    holder_addr: str = ""
    # casfs status --json of each quota reader: (file still open, file closed)
    samples: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    live: list[Node] = field(default_factory=list)  # mounted: stopped on every exit path
    count: int = 0  # nodes made so far, for unique names

    def node(self, label: str, config: str = "") -> Node:
        """A fresh, empty CASFS_HOME (with config.toml if given) and a mount point."""
        self.count += 1
        name = f"{label}-{self.count}"
        node = Node(self.scratch / f"home-{name}", self.scratch / f"mnt-{name}")
        node.home.mkdir()
        node.mnt.mkdir()
        if config:
            (node.home / "config.toml").write_text(config)
        return node

    def mount(self, node: Node) -> None:
        # mount_casfs leaves nothing running when it fails, so only a mounted node is tracked.
        try:
            node.pid = benchlib.mount_casfs(node.mnt, node.env, node.log, MOUNT_TIMEOUT_S)
        except BenchError as exc:
            # The daemon's own log says why; it is in the reader's home, deleted on the way out.
            raise BenchError(f"{exc} | {benchlib.log_tail(node.home / 'casfs.log', 400)}") from exc
        self.live.append(node)

    def stop(self, node: Node) -> None:
        if node in self.live:
            self.live.remove(node)
            benchlib.casfs_unmount(node.mnt, node.env, node.log, node.pid)


def start_holder(b: Bench) -> None:
    holder = b.node("holder")
    b.cid = holder.cli("add", "--quiet", str(b.data), timeout=ADD_TIMEOUT_S).strip()
    if not b.cid:
        raise BenchError("casfs add printed no CID")
    b.mount(holder)
    addrs = holder.json("id").get("addrs", [])
    if not addrs or "/p2p/" not in addrs[0]:
        raise BenchError(f"casfs id --json of the holder gave no usable address: {addrs}")
    b.holder_addr = addrs[0]
    log(f"holder: {b.holder_addr}")


@contextlib.contextmanager
def reader(b: Bench, quota: bool) -> Iterator[Node]:
    """A fresh reader bootstrapped to the holder, connected and greeted; gone on the way out."""
    # JSON strings of plain ASCII multiaddrs are valid TOML basic strings.
    config = f"[p2p]\nbootstrap = {json.dumps([b.holder_addr])}\n"
    if quota:
        config += f'\n[cache]\nquota_bytes = {b.quota}\nstrategy = "{b.args.strategy}"\n'
    node = b.node("quota" if quota else "plain", config)
    try:
        b.mount(node)

        def connected() -> bool:
            with contextlib.suppress(BenchError, ValueError):
                return len(node.json("peers")) >= 1
            return False

        if not benchlib.wait_until(connected, PEER_WAIT_S, 0.2):
            raise BenchError(f"{node.home.name} did not connect to the holder")
        time.sleep(BLOOM_WAIT_S)
        yield node
    finally:
        b.stop(node)
        shutil.rmtree(node.home, ignore_errors=True)  # its store may hold most of the file


def sample(b: Bench, node: Node) -> dict[str, Any]:
    """Wait out the housekeeping, then its status (checked: the reader's config took effect)."""
    time.sleep(SETTLE_S)
    facts = node.json("status")
    if not isinstance(facts, dict):
        raise BenchError(f"casfs status --json of {node.home.name} gave {facts!r}")
    want = (b.quota, b.args.strategy, True)
    got = (facts.get("quota_bytes"), facts.get("strategy"), isinstance(facts.get("eviction"), dict))
    if got != want:
        raise BenchError(f"{node.home.name} status: quota, strategy, eviction {got}, not {want}")
    return facts


def pread_all(fd: int, offsets: list[int], limit_s: float) -> tuple[float, bytes]:
    """The timed preads (seconds, bytes), in a thread so that a hung read cannot hang us."""
    out: list[Any] = []

    def work() -> None:
        try:
            got, start = [], time.perf_counter()
            for off in offsets:
                got.append(os.pread(fd, READ_SIZE, off))
                if time.perf_counter() - start > limit_s:
                    raise BenchError(f"{len(got)} of {len(offsets)} reads in {limit_s:.0f}s")
            out.append((time.perf_counter() - start, b"".join(got)))
        except BaseException as exc:  # handed to the caller's thread
            out.append(exc)

    # daemon: if a read hangs anyway, stopping the reader's daemon ends it and we still exit
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(limit_s + 30)
    if not out or isinstance(out[0], BaseException):
        raise BenchError(f"random reads: {out[0]!r}" if out else "random reads hung")
    return out[0]


def measure(b: Bench, metric: Metric, quota: bool, rand: bool, check: bool) -> None:
    """One fresh reader, one timed read (dd, or the preads); the quota reader's samples."""
    with reader(b, quota) as node:
        path = node.mnt / b.cid
        # The fd stays open past the timed read, so the first sample sees the file open: casfs
        # never evicts blocks of open files, so it shows how far one read overshoots the quota.
        fd = os.open(path, os.O_RDONLY)
        try:
            if rand:
                # The reader's store fills page cache as it fetches (timed_dd does the same).
                benchlib.prefault(b.args.size + benchlib.PREFAULT_MARGIN)
                seconds, got = pread_all(fd, b.offsets, benchlib.io_timeout(b.args.size))
                metric.values.append(len(b.offsets) / seconds)
                if metric.checked != "CONTENT DIFFERS":  # one bad run must stay visible
                    metric.check_sha(hashlib.sha256(got).hexdigest(), b.want_reads_sha)
            else:
                metric.values.append(benchlib.timed_dd(path, b.args.size))
            opened = sample(b, node) if quota else {}
        finally:
            os.close(fd)
        if quota:
            b.samples.append((opened, sample(b, node)))
        if check:
            # Untimed, after the samples: the quota reader refetches what it evicted.
            metric.check_file(path, b.sha, b.args.size)


def choose_offsets(b: Bench) -> None:
    """Seeded 4 KiB-aligned offsets (one page each), and what the file holds there."""
    rng = random.Random(b.args.seed)
    pages = b.args.size // READ_SIZE
    b.offsets = [rng.randrange(pages) * READ_SIZE for _ in range(b.args.reads)]
    digest = hashlib.sha256()
    with open(b.data, "rb") as f:
        for off in b.offsets:
            digest.update(os.pread(f.fileno(), READ_SIZE, off))
    b.want_reads_sha = digest.hexdigest()


# --------------------------------------------------------------------------- the report


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def pair_rows(title: str, base: Metric, quota: Metric, unit: str) -> list[tuple[str, ...]]:
    """A baseline row, and the quota row judged by quota / baseline >= RATIO_TARGET."""
    b, q = base.median(), quota.median()
    cells = [f"{v:.1f} {unit}" if v else "FAILED" for v in (b, q)]
    ratio = f"{q / b:.2f}" if b and q else "-"
    judged = f">= {RATIO_TARGET:.1f}" + (f"  {verdict(q / b >= RATIO_TARGET)}" if b and q else "")
    return [
        (f"{title}, no quota", cells[0], "-", "1.00" if b else "-", "baseline"),
        (f"{title}, {quota.title.split(', ')[-1]}", cells[1], cells[0], ratio, judged),
    ]


def eviction_rows(b: Bench) -> list[tuple[str, ...]]:
    """The rows from the quota readers' status samples (see sample())."""
    if not b.samples:
        return [("eviction (casfs status --json)", "FAILED", "-", "-", "no sample")]
    closed = [c for _, c in b.samples]
    stall = max(float(c["eviction"]["worst_stall_ms"]) for c in closed)
    evicted = statistics.median(int(c["eviction"]["evicted_bytes"]) for c in closed)
    kept = max(int(c["block_bytes"]) for c in closed)
    kept_open = max(int(o["block_bytes"]) for o, _ in b.samples)
    limit = b.quota + int(SLACK_SHARE * b.args.size)
    stall_ok = f"<= {STALL_TARGET_MS:.0f} ms  {verdict(stall <= STALL_TARGET_MS)}"
    lim, kept_ok = mib(limit), f"<= quota+10%  {verdict(kept <= limit)}"
    return [
        (f"worst eviction stall (max of {len(closed)})", f"{stall:.1f} ms", "-", "-", stall_ok),
        ("evicted per quota reader (median)", mib(evicted), "-", "-", "reported"),
        ("block_bytes after close (max)", mib(kept), lim, f"{kept / limit:.2f}", kept_ok),
        ("block_bytes while open (max)", mib(kept_open), lim, f"{kept_open / limit:.2f}", "-"),
    ]


def print_report(b: Bench, metrics: list[Metric]) -> bool:
    """The table, then per-run values and per-reader samples; True when all was measured."""
    seq_base, seq_quota, rnd_base, rnd_quota = metrics
    rows = pair_rows("sequential dd bs=1M", seq_base, seq_quota, "MB/s")
    rnd = f"random {READ_SIZE // 1024} KiB pread x{b.args.reads}"
    rows += pair_rows(rnd, rnd_base, rnd_quota, "reads/s") + eviction_rows(b)
    benchlib.print_ruled_table(
        f"casfs cache benchmark: {mib(b.args.size)} random file from 1 loopback peer, quota "
        f"{mib(b.quota)} ({QUOTA_SHARE:.0%}), strategy {b.args.strategy}, medians of "
        f"{b.args.runs} run(s)",
        ("metric", "value", "baseline", "ratio", "target"),
        rows,
    )
    print("\nper run:")
    for m, unit in zip(metrics, ("MB/s", "MB/s", "reads/s", "reads/s"), strict=True):
        m.print_runs(f"{m.title} ({unit})")
    print("quota readers, in order (block_bytes while open -> after close):")
    for i, (o, c) in enumerate(b.samples):
        ev = c["eviction"]
        print(
            f"  {i + 1}: {mib(o['block_bytes'])} -> {mib(c['block_bytes'])}, "
            f"{ev['runs']} eviction runs, {ev['evicted_blocks']} blocks / "
            f"{mib(ev['evicted_bytes'])} evicted, worst stall {ev['worst_stall_ms']} ms"
        )
    print(f"\nfile CID {b.cid}")
    ok = all(len(m.values) == b.args.runs and not m.errors for m in metrics)
    return ok and len(b.samples) == 2 * b.args.runs


def run_all(b: Bench) -> bool:
    label = f"quota {QUOTA_SHARE:.0%} {b.args.strategy}"
    seq_base, seq_quota = Metric("sequential, no quota"), Metric(f"sequential, {label}")
    rnd_base, rnd_quota = Metric("random, no quota"), Metric(f"random, {label}")
    choose_offsets(b)
    start_holder(b)
    started = time.monotonic()
    for run in range(b.args.runs):
        last = run == b.args.runs - 1
        log(f"run {run + 1}/{b.args.runs} ({time.monotonic() - started:.0f} s)")
        # Alternate which side goes first, so neither always follows the other.
        for base, quota_m, rand in ((seq_base, seq_quota, False), (rnd_base, rnd_quota, True)):
            for quota in (False, True) if run % 2 == 0 else (True, False):
                m = quota_m if quota else base
                benchlib.attempt(m, run, measure, b, m, quota, rand, last and not rand)
    return print_report(b, [seq_base, seq_quota, rnd_base, rnd_quota])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--size", type=benchlib.parse_size, default=256 * MiB, help="file size (256MiB)")
    p.add_argument("--runs", type=int, default=3, help="runs; medians are reported (3)")
    p.add_argument("--strategy", choices=STRATEGIES, default="lru", help="cache strategy (lru)")
    p.add_argument("--reads", type=int, default=2000, help="random 4 KiB reads per run (2000)")
    p.add_argument("--seed", type=int, default=1, help="seed of the random offsets (1)")
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 20:
        p.error("--runs must be 1..20")
    if not 1 <= args.reads <= 100_000:
        p.error("--reads must be 1..100000")
    if args.size < 16 * MiB:
        p.error("--size must be at least 16MiB (the quota is 10% of it)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        benchlib.check_system("FUSE mounts", ["fusermount3", "dd"], [benchlib.CASFS_EXE])
    except BenchError as exc:
        log(f"bench_cache: {exc}")
        return 1
    # SIGTERM/SIGHUP unwind through the finally below, which unmounts and stops everything.
    benchlib.unwind_on_signals()
    with benchlib.scratch_dir("casfs-bench-cache-") as scratch:
        b = Bench(args, scratch, int(QUOTA_SHARE * args.size), scratch / "data.bin")
        try:
            log(f"writing {args.size / MiB:.0f} MiB of random data")
            b.sha = benchlib.write_random(b.data, args.size)
            return 0 if run_all(b) else 1
        except (BenchError, OSError, ValueError, KeyError) as exc:
            log(f"bench_cache: {exc}")
            return 1
        except (Interrupted, KeyboardInterrupt) as exc:
            log(f"bench_cache: interrupted ({exc or 'SIGINT'}); cleaning up")
            return 130
        finally:
            benchlib.stop_all(b.live, b.stop, scratch)


if __name__ == "__main__":
    sys.exit(main())
