"""Mounting: checks with clear errors, start-up and teardown in one AsyncExitStack, signals.

`casfs mount` starts `casfs mount --foreground` in a new session and returns once the child
reports the mount ready (or relays its one-line error).
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pyfuse3
import trio

if TYPE_CHECKING:
    from casfs.p2p.node import PeerNode

from casfs import cid as cidmod
from casfs import control
from casfs.cache.evictor import Evictor
from casfs.cache.policy import POLICIES
from casfs.config import Config
from casfs.errors import QuietError
from casfs.fs import Operations
from casfs.pagecache import PagePusher
from casfs.pinning import Pinner
from casfs.pinpolicy import PinPolicy
from casfs.services import (
    control_handler,
    housekeeping,
    open_node,
    peer_node,
    sync_store,
    write_status,
)
from casfs.store import Store
from casfs.xattrs import Xattrs

log = logging.getLogger(__name__)
READY_TIMEOUT = 30.0


def _stale(mountpoint: Path) -> QuietError:
    return QuietError(f"{mountpoint} is a stale mount (transport endpoint is not connected): "
                      f"run 'fusermount3 -u {mountpoint}' first")


def check_mountpoint(mountpoint: Path) -> None:
    try:
        os.stat(mountpoint)
    except FileNotFoundError:
        raise QuietError(f"mountpoint {mountpoint} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise _stale(mountpoint) from None
        raise QuietError(f"mountpoint {mountpoint}: {exc.strerror}") from None
    if not os.path.isdir(mountpoint):
        raise QuietError(f"mountpoint {mountpoint} is not a directory")
    if os.path.ismount(mountpoint):
        try:  # stat may be answered from the kernel's cache; opening the directory is not
            os.listdir(mountpoint)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                raise _stale(mountpoint) from None
        raise QuietError(f"{mountpoint} is already a mount point")
    if not os.path.exists("/dev/fuse"):
        raise QuietError("/dev/fuse is missing: load the fuse module (modprobe fuse)")
    if shutil.which("fusermount3") is None and os.getuid() != 0:
        raise QuietError("fusermount3 not found: install the fuse3 package")


def _device_of(mountpoint: Path) -> str | None:
    """major:minor of the mount at mountpoint, from mountinfo.

    Inside the mount process nothing may stat the mountpoint (realpath, ismount): the kernel
    would ask this very process, which is not serving yet, and both would wait forever.
    """
    target = os.path.abspath(mountpoint)
    dev = None
    with open("/proc/self/mountinfo") as f:
        for line in f:  # the last entry for a path is the one on top
            parts = line.split()
            if len(parts) > 4 and parts[4] == target:
                dev = parts[2]
    return dev


def set_read_ahead(mountpoint: Path, kb: int) -> None:
    """Bigger readahead makes the kernel send bigger read requests (FACTS.md: 1 MiB ≈ 1.85×)."""
    dev = _device_of(mountpoint)
    if dev is None or kb <= 0:
        return
    try:
        Path(f"/sys/class/bdi/{dev}/read_ahead_kb").write_text(f"{kb}\n")
    except OSError as exc:  # needs root; the mount works without it, only slower
        log.info("could not set read_ahead_kb for %s: %s", mountpoint, exc.strerror)


def _raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (at most 65536): the store keeps block files
    open across reads, and distributions often start daemons with a soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            log.debug("could not raise the fd limit: %s", exc)


def fuse_options() -> set[str]:
    # No default_permissions: the kernel would answer writes with EACCES before asking us, and
    # a read-only content store should say EROFS. No "ro" either: setxattr must reach us (pins).
    return {"fsname=casfs", "subtype=casfs"}


async def _watch_signals(on_signal: Callable[[], None]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("got signal %d, unmounting", signum)
            on_signal()
            return


def _pin_handler(cfg: Config, pinner: Pinner):  # type: ignore[no-untyped-def]
    """Whether to keep a replica a peer asks for: only for peers we trust enough."""

    def handle(peer: str, trust: float, cid: bytes) -> tuple[bool, str]:
        if trust < cfg.trust_required:
            return False, "not trusted enough"
        pinner.pin(cid, reason="peer")
        return True, "pinned"

    return handle


def _trust(peers: PeerNode | None):  # type: ignore[no-untyped-def]
    """Trust in a block's source, for the trust-based eviction policy."""
    defaults = {"local": 1.0, "ipfs": 0.8, "gateway": 0.5, "peers": 0.5}

    def trust(source: str) -> float:
        if source.startswith("peer ") and peers is not None:
            state = peers.peers.get(source[5:])
            return state.trust if state is not None else 0.3
        return defaults.get(source.split(" ", 1)[0], 0.5)

    return trust


async def _when_serving(mountpoint: Path, read_ahead_kb: int, ready: Callable[[], None]
                        ) -> None:
    """Once the kernel has finished its INIT handshake, raise readahead, then report ready.

    Written before INIT completes, read_ahead_kb is cut back to the 128 KiB the kernel offered
    at mount time. A stat of the mount root returns only after INIT (it is served by the loop
    that main() runs, so it has to wait in a thread)."""
    try:
        await trio.to_thread.run_sync(os.stat, mountpoint, abandon_on_cancel=True)
        set_read_ahead(mountpoint, read_ahead_kb)
    except OSError as exc:
        log.warning("the new mount does not answer: %s", exc)
    ready()


async def serve(cfg: Config, mountpoint: Path, ready: Callable[[], None]) -> None:
    """Mount and serve until unmounted or signalled. Teardown runs in reverse order."""
    async with AsyncExitStack() as stack:
        _raise_fd_limit()
        store = stack.enter_context(Store.open(cfg.home))
        services = await stack.enter_async_context(trio.open_nursery())
        stack.callback(services.cancel_scope.cancel)
        peers = peer_node(cfg, store)
        if peers is not None:
            try:
                await services.start(peers.run)
            except (OSError, ValueError) as exc:
                raise QuietError(f"peer network: cannot listen on "
                                 f"{', '.join(cfg.p2p_listen)}: {exc}") from None
        node = await stack.enter_async_context(open_node(cfg, store, services, peers))
        pinner = Pinner(store, node.dag, node.fetcher, services)
        pinner.resume()
        policy = PinPolicy(cfg, pinner, node.access, peers)
        if peers is not None:
            peers.pin_handler = _pin_handler(cfg, pinner)
        await services.start(control.serve, cfg.control_socket,
                             control_handler(node, peers, pinner))
        stack.push_async_callback(sync_store, store)
        ops = Operations(node.tree, node.reader, Xattrs(node.tree, pinner, peers))
        evictor = Evictor(store, node.dag, POLICIES[cfg.cache_strategy](), cfg.quota_bytes,
                          lambda: ops.open_files, node.access, _trust(peers))
        try:
            pyfuse3.init(ops, str(mountpoint), fuse_options())
        except RuntimeError as exc:
            raise QuietError(f"could not mount {mountpoint}: {exc}") from None
        unmounted = False

        def close() -> None:
            pyfuse3.close(unmount=not unmounted)

        stack.callback(close)
        if cfg.push_blocks:
            node.reader.pusher = PagePusher()
            stack.callback(node.reader.pusher.close)  # runs before close(): LIFO
        cfg.pid_file.write_text(f"{os.getpid()}\n")
        stack.callback(lambda: cfg.pid_file.unlink(missing_ok=True))
        stack.callback(lambda: cfg.status_file.unlink(missing_ok=True))
        def status() -> dict[str, object]:
            return {"eviction": evictor.stats.as_dict(), "quota_bytes": cfg.quota_bytes,
                    "strategy": cfg.cache_strategy,
                    "pinned_bytes": store.index.pinned_bytes(),
                    "replicas": {cidmod.to_str(c): policy.count(c) for c in policy.replicas}}

        write_status(node, status())
        await services.start(housekeeping, node, [evictor.enforce, policy.step], status)
        log.info("mounted %s on %s (sources: %s)", cfg.home, mountpoint,
                 ", ".join(s.name for s in node.chain.sources) or "local only")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, pyfuse3.terminate)
            nursery.start_soon(_when_serving, mountpoint, cfg.read_ahead_kb, ready)
            await pyfuse3.main(min_tasks=1, max_tasks=cfg.max_tasks)
            # main() also returns when someone ran fusermount3 -u; then nothing is mounted.
            unmounted = _device_of(mountpoint) is None
            nursery.cancel_scope.cancel()
        log.info("unmounted %s", mountpoint)


def run_foreground(cfg: Config, mountpoint: Path, notify_fd: int | None) -> None:
    def ready() -> None:
        if notify_fd is not None:
            os.write(notify_fd, b"ready\n")
            os.close(notify_fd)

    try:
        trio.run(serve, cfg, mountpoint, ready)
    except QuietError as exc:
        if notify_fd is not None:
            os.write(notify_fd, f"error: {exc}\n".encode())
        raise


def spawn(cfg: Config, mountpoint: Path, global_args: list[str], mount_args: list[str]) -> int:
    """Start the mount in the background; return its PID once it is ready."""
    rfd, wfd = os.pipe()
    cmd = [sys.executable, "-m", "casfs", "--home", str(cfg.home), *global_args,
           "mount", *mount_args, "--foreground", "--notify-fd", str(wfd), str(mountpoint)]
    cfg.home.mkdir(parents=True, exist_ok=True)
    with open(cfg.log_file, "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                pass_fds=(wfd,), start_new_session=True)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as pipe:
        msg = _read_line(pipe, READY_TIMEOUT)
    if msg == "ready":
        return proc.pid
    if proc.poll() is None:
        proc.terminate()
    if msg.startswith("error: "):
        raise QuietError(msg[len("error: "):])
    raise QuietError(f"the mount process exited before the mount was ready; see {cfg.log_file}")


def _read_line(pipe: object, timeout: float) -> str:
    import select

    fd = pipe.fileno()  # type: ignore[attr-defined]
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return "error: the mount did not become ready in time"
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def umount(cfg: Config, mountpoint: Path, timeout: float = 10.0) -> None:
    if not os.path.ismount(mountpoint):
        raise QuietError(f"{mountpoint} is not mounted")
    tool = "fusermount3" if shutil.which("fusermount3") else "umount"
    args = [tool, "-u", str(mountpoint)] if tool == "fusermount3" else [tool, str(mountpoint)]
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        raise QuietError(res.stderr.strip().splitlines()[-1] if res.stderr.strip()
                         else f"{tool} failed")
    # Wait for the mount process to finish its teardown, so the store is closed cleanly.
    try:
        pid = int(cfg.pid_file.read_text())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.02)


def _running(pid: int) -> bool:
    """True while pid runs; a zombie no one has reaped yet has finished its teardown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
