"""What the benchmark scripts (bench_local.py, bench_ipfs.py, bench_peers.py) have in common.

Processes and mounts (start, unmount, stop; nothing left behind on any exit path), timed reads
with dd, memory pre-touching, the scratch directory, and the per-run metric rows and tables of
the reports. The scripts import it as `benchlib` (they run as `python scripts/bench_X.py`, so
scripts/ is on sys.path). Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import mmap
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TypeVar

MiB = 1 << 20
GiB = 1 << 30
REPO = Path(__file__).resolve().parent.parent
CASFS_EXE = REPO / ".venv" / "bin" / "casfs"
CACHE_DIR = Path.home() / ".cache" / "casfs-bench"
SCRATCH_PARENT = Path("/var/tmp")

UNMOUNT_TIMEOUT_S = 30.0
PIP_TIMEOUT_S = 600.0
POLL_S = 0.05
MIN_IO_TIMEOUT_S = 120.0
MIN_IO_RATE = 5e6  # bytes/s; a transfer slower than this is treated as hung
PREFAULT_MARGIN = 64 * MiB  # page-cache pages a cold read needs beyond the file itself
WRITE_CHUNK = 4 * MiB
LOG_TAIL = 800  # characters of a log quoted in an error

T = TypeVar("T")


class BenchError(RuntimeError):
    """A measurement or setup step failed."""


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwinds like KeyboardInterrupt so every finally block runs."""


def unwind_on_signals() -> None:
    """Make SIGTERM and SIGHUP raise Interrupted, so the callers' cleanup still unmounts."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


# --------------------------------------------------------------------------- small helpers


def io_timeout(
    nbytes: int, min_s: float = MIN_IO_TIMEOUT_S, min_rate: float = MIN_IO_RATE
) -> float:
    return max(min_s, nbytes / min_rate)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def log_tail(path: Path | None, chars: int = LOG_TAIL) -> str:
    """The end of a log file ("" if there is none), to say why something failed."""
    try:
        return path.read_text(errors="replace")[-chars:] if path is not None else ""
    except OSError:
        return ""


def run_checked(
    cmd: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run cmd with its output captured as text; BenchError if it fails or times out."""
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
        err = (res.stderr or res.stdout or "").strip()[-LOG_TAIL:]
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
    """True if pid exists and is not a zombie (a reaped-later child still counts as gone)."""
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


def reap(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for a child to exit; SIGKILL it if it has not within timeout."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def proc_meminfo_kb() -> dict[str, int]:
    with open("/proc/meminfo") as f:
        return {line.split(":")[0]: int(line.split()[1]) for line in f}


def prefault(nbytes: int) -> None:
    """Touch, then free, nbytes of anonymous memory right before a timed read.

    On this VM, guest memory that has been free for ~2 s is handed back to the host (virtio
    balloon free page reporting), and the first touch of such a page is slow (~0.5 GB/s). A cold
    FUSE read fills fresh page-cache pages (a casfs reader also writes its store; the raw libp2p
    client and Kubo allocate buffers), so without this its speed depended on how long the machine
    had been idle (4 GiB through the passthrough: 1.0 s right after another read, 4-5 s after a
    10 s pause, 1.1-1.3 s with this). Freshly freed pages are reused first. The IPFS and peer
    benchmarks call it before every timed transfer, the baselines' included (curl to /dev/null
    fills no page cache), so that all sides start alike.
    """
    avail = proc_meminfo_kb().get("MemAvailable", 0) * 1024
    nbytes = min(nbytes, max(0, avail - GiB))
    if nbytes <= 0:
        return
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE
    with mmap.mmap(-1, nbytes, flags=flags):
        pass


def write_random(path: Path, size: int) -> str:
    """Write size random bytes; returns their sha256 (to check what every side received).

    Fresh random bytes throughout: repeated chunks would be deduplicated by casfs.
    """
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


def venv_install(venv: Path, packages: list[str], cwd: Path | None = None) -> Path:
    """pip install packages into their own venv (created on first use); returns its python."""
    py = venv / "bin" / "python"
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    if not py.exists():
        # The base interpreter, not this venv's: the tool's packages must not meet casfs's.
        base = Path(sys.base_prefix) / "bin" / "python3"
        run_checked([str(base), "-m", "venv", str(venv)], 120, cwd=cwd)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run_checked([*pip, *packages], PIP_TIMEOUT_S, cwd=cwd)
    return py


# --------------------------------------------------------------------------- mounts


def _unescape_mountinfo(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def mountinfo_entries() -> list[tuple[str, str, str]]:
    """(major:minor, mount point, fstype) of every mount in this namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            out.append((fields[2], _unescape_mountinfo(fields[4]), right.split()[0]))
    return out


def fuse_mount_points() -> list[str]:
    return [point for _, point, fstype in mountinfo_entries() if fstype.startswith("fuse")]


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


def stop_all(live: list[T], stop: Callable[[T], None], scratch: Path) -> None:
    """Stop every tracked mount, then lazily unmount whatever FUSE mount is left in scratch."""
    for item in list(live):
        with contextlib.suppress(Exception):
            stop(item)
    for point in fuse_mount_points():
        if point.startswith(str(scratch) + "/"):
            subprocess.run(["fusermount3", "-u", "-z", point], capture_output=True, timeout=30)


def start_fuse_child(
    cmd: list[str], mnt: Path, log: Path, timeout: float, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """Start a FUSE process in the foreground (output to log) and wait until mnt is mounted.

    If it exits or does not mount in time, it is unmounted and stopped, and the BenchError
    quotes its log.
    """
    with open(log, "w") as logf:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    ready = wait_until(lambda: is_mounted(mnt) or proc.poll() is not None, timeout)
    if not ready or proc.poll() is not None:
        fusermount_u(mnt)
        reap(proc, UNMOUNT_TIMEOUT_S)
        name = Path(cmd[0]).name
        raise BenchError(f"{name} did not mount {mnt} (exit {proc.poll()}): {log_tail(log)}")
    return proc


def run_casfs(
    args: list[str], env: dict[str, str], log: Path, timeout: float, exe: Path = CASFS_EXE
) -> int | str:
    """`casfs args` with its output appended to log; returns its exit code, or "timeout"."""
    # Output goes to a file, not a pipe: `casfs mount` daemonizes, and the daemon would inherit
    # the pipe and keep it open.
    with open(log, "a") as logf:
        try:
            res = subprocess.run(
                [str(exe), *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "timeout"
    return res.returncode


def mount_casfs(
    mnt: Path,
    env: dict[str, str],
    log: Path,
    timeout: float,
    args: Sequence[str] = (),
    exe: Path = CASFS_EXE,
) -> int:
    """`casfs mount [args] mnt` with env's CASFS_HOME; returns the PID of the mount daemon.

    On failure nothing is left mounted or running, and the BenchError quotes the log.
    """
    code = run_casfs(["mount", *args, str(mnt)], env, log, timeout, exe)
    pid = 0  # the daemon writes CASFS_HOME/mount.pid before the mount is ready
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((Path(env["CASFS_HOME"]) / "mount.pid").read_text().split()[0])
    if code != 0 or pid <= 0 or not is_mounted(mnt):
        casfs_unmount(mnt, env, log, pid, exe)
        what = " ".join([*args, mnt.name])
        raise BenchError(f"casfs mount {what} failed ({code}, pid {pid}): {log_tail(log)}")
    return pid


def casfs_unmount(
    mnt: Path, env: dict[str, str], log: Path, pid: int, exe: Path = CASFS_EXE
) -> None:
    """`casfs umount`, fusermount3 if that did not work, then wait for (or stop) the daemon."""
    if is_mounted(mnt):
        run_casfs(["umount", str(mnt)], env, log, UNMOUNT_TIMEOUT_S, exe)
    fusermount_u(mnt)  # a no-op when `casfs umount` worked
    if pid > 0:
        stop_pid(pid, b"casfs", UNMOUNT_TIMEOUT_S)


# --------------------------------------------------------------------------- timed reads


def dd_read(path: Path, nbytes: int, timeout: float) -> tuple[float, float]:
    """dd path to /dev/null with 1 MiB reads; returns (seconds as dd timed them, wall clock)."""
    start = time.perf_counter()
    try:
        res = subprocess.run(
            ["dd", f"if={path}", "of=/dev/null", "bs=1M"],
            timeout=timeout,
            text=True,
            capture_output=True,
            env={**os.environ, "LC_ALL": "C"},
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"dd of {path.name} took over {timeout:.0f}s") from exc
    wall = time.perf_counter() - start
    if res.returncode != 0:
        # dd's first line names the file and the errno, which is all a reader needs.
        first = (res.stderr.strip().splitlines() or ["(no output)"])[0]
        raise BenchError(f"dd exit {res.returncode}: {first.replace(str(path.parent) + '/', '')}")
    match = re.search(r"(\d+) bytes .* copied, ([0-9.e+-]+) s", res.stderr)
    if not match or int(match.group(1)) != nbytes:
        raise BenchError(f"dd of {path} did not read {nbytes} bytes: {res.stderr.strip()!r}")
    return float(match.group(2)), wall


def timed_dd(path: Path, nbytes: int) -> float:
    """Cold sequential read with 1 MiB reads; wall-clock MB/s of the whole dd (like the curl)."""
    prefault(2 * nbytes + PREFAULT_MARGIN)
    _, seconds = dd_read(path, nbytes, io_timeout(nbytes))
    return nbytes / seconds / 1e6


# --------------------------------------------------------------------------- reports

RECOVERABLE: tuple[type[Exception], ...] = (BenchError, OSError, ValueError, KeyError)


@dataclass
class Metric:
    """One row of a report: a value per run, and what went wrong."""

    title: str
    target: str = ""
    threshold: float | None = None  # ratio to reach; None: reported, not judged
    values: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    checked: str = ""  # what the content check said
    notes: list[str] = field(default_factory=list)

    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def check_sha(self, got: object, want: str) -> None:
        """Record whether the bytes a side delivered hash to what was written."""
        self.checked = "content ok" if got == want else "CONTENT DIFFERS"

    def check_file(self, path: Path, want: str, nbytes: int) -> None:
        self.check_sha(sha256_file(path, io_timeout(nbytes)), want)

    def print_runs(self, label: str) -> None:
        """The per-run lines of the details after the table."""
        values = ", ".join(f"{v:.1f}" for v in self.values) or "-"
        note = f"  [{self.checked}]" if self.checked else ""
        print(f"  {label}: {values}{note}")
        for n in self.notes:
            print(f"    {n}")
        for err in self.errors:
            print(f"    error {err}")


def attempt(
    metric: Metric,
    run: int,
    fn: Callable[..., object],
    *fargs: object,
    catch: tuple[type[Exception], ...] = RECOVERABLE,
) -> None:
    """Run one measurement; a failure is recorded in its row and the benchmark goes on."""
    try:
        fn(*fargs)
    except catch as exc:
        metric.errors.append(f"run {run + 1}: {exc}")
        log(f"  {metric.title}: run {run + 1} failed: {exc}")


def aligned(rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> tuple[list[str], str]:
    """rows as lines, columns two spaces apart (right-aligned if in right), and a dashed rule."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    return lines, "  ".join("-" * w for w in widths)


def print_ruled_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A blank line, the title, then the table between rules, the value columns right-aligned."""
    lines, rule = aligned([header, *rows], right=range(1, len(header) - 1))
    print()
    print(title)
    print(rule)
    print(lines[0])
    print(rule)
    for line in lines[1:]:
        print(line)
    print(rule)


# --------------------------------------------------------------------------- set-up


def parse_size(text: str) -> int:
    """256MiB, 256M, 1GiB, 1GB, 4096, 4096B: powers of 1024 throughout."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:([KMG])i?B?|B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 256MiB, 1GiB)")
    value = int(match.group(1)) * 1024 ** " KMG".index((match.group(2) or " ").upper())
    if value <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return value


def check_system(root_for: str, tools: Sequence[str], files: Sequence[Path]) -> None:
    """Root, /dev/fuse, the tools on PATH and the files of the venv; BenchError says what lacks."""
    if os.geteuid() != 0:
        raise BenchError(f"needs root ({root_for})")
    if not os.path.exists("/dev/fuse"):
        raise BenchError("/dev/fuse is missing")
    for tool in tools:
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found")
    for path in files:
        if not path.exists():
            raise BenchError(f"{path} not found (scripts/install.sh)")


@contextlib.contextmanager
def scratch_dir(prefix: str, parent: Path = SCRATCH_PARENT) -> Iterator[Path]:
    """A fresh directory under parent, deleted with everything in it on the way out."""
    parent.mkdir(parents=True, exist_ok=True)
    # resolve(): mountinfo lists canonical paths, and mounts are found by comparing with them
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=parent)).resolve()
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
