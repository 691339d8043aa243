"""The `casfs` command. Bad input gets one line on stderr and a non-zero exit, never a
traceback (unless --debug)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn

import trio

from casfs import __version__, config, control
from casfs import cid as cidmod
from casfs.errors import BadName, BlockNotFound, CasfsError, DeadlineExceeded, QuietError
from casfs.importer import Importer, total_bytes
from casfs.store import Store
from casfs.unixfs import Kind

log = logging.getLogger("casfs")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise QuietError(f"{self.prog}: {message}", exitcode=2)


def _nonneg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0: {text}")
    return value


def build_parser() -> Parser:
    p = Parser(prog="casfs", description="A content-addressed filesystem; names are IPFS CIDs.")
    p.add_argument("--home", type=Path, help="state directory (default $CASFS_HOME or "
                   "~/.local/share/casfs)")
    p.add_argument("--config", type=Path, help="config file (default HOME/config.toml)")
    p.add_argument("--debug", action="store_true", help="debug logging, tracebacks on errors")
    p.add_argument("--version", action="version", version=f"casfs {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    a = sub.add_parser("add", help="store files or directories, print their CIDs")
    a.add_argument("paths", nargs="+", type=Path)
    a.add_argument("-q", "--quiet", action="store_true", help="print only the CIDs")
    a.add_argument("-H", "--hidden", action="store_true",
                   help="include dot-files in directories (ipfs add skips them too)")
    a.add_argument("--private", action="store_true",
                   help="serve it only to trusted peers; never ask IPFS or a gateway for it")

    c = sub.add_parser("cat", help="write content to stdout")
    c.add_argument("name", help="CID, sha256 of the content, or CID/path/in/directory")
    c.add_argument("--offset", type=_nonneg, default=0)
    c.add_argument("--length", type=_nonneg, default=None)

    m = sub.add_parser("mount", help="mount the store; returns once the mount is ready")
    m.add_argument("mountpoint", type=Path)
    m.add_argument("-f", "--foreground", action="store_true", help="stay attached")
    m.add_argument("--notify-fd", type=int, help=argparse.SUPPRESS)
    m.add_argument("--ipfs-api", help="IPFS node RPC API multiaddr, e.g. "
                   "/ip4/127.0.0.1/tcp/5001/http ('' turns the link off)")
    m.add_argument("--gateway", help="IPFS gateway URL, e.g. http://127.0.0.1:8080")
    m.add_argument("--deadline", type=float, help="seconds a read waits for sources")

    u = sub.add_parser("umount", help="unmount")
    u.add_argument("mountpoint", type=Path)

    v = sub.add_parser("verify", help="re-hash every block; report bad ones")
    v.add_argument("--repair", action="store_true", help="drop bad blocks")

    s = sub.add_parser("status", help="what the store holds")
    s.add_argument("--json", action="store_true")

    sub.add_parser("config", help="print the effective configuration")

    pn = sub.add_parser("pin", help="pin content (fetch all of it, never evict it)")
    pn.add_argument("name", help="CID, sha256 or CID/path")
    pn.add_argument("--no-wait", action="store_true", help="return before the pin is complete")
    un = sub.add_parser("unpin", help="remove a pin")
    un.add_argument("name")
    ps = sub.add_parser("pins", help="list pins")
    ps.add_argument("--json", action="store_true")

    sk = sub.add_parser("swarm-key", help="private swarms: make or share a swarm key")
    sk_sub = sk.add_subparsers(dest="key_command", required=True, parser_class=Parser)
    gen = sk_sub.add_parser("generate", help="write HOME/swarm.key (IPFS swarm.key format)")
    gen.add_argument("--force", action="store_true", help="replace an existing key")
    share = sk_sub.add_parser("share", help="send the key, sealed, to a connected trusted peer")
    share.add_argument("peer_id")

    i = sub.add_parser("id", help="this node's peer id, did:key and listen addresses")
    i.add_argument("--json", action="store_true")

    pe = sub.add_parser("peers", help="list connected peers, or connect one")
    pe.add_argument("--json", action="store_true")
    pe_sub = pe.add_subparsers(dest="peers_command", parser_class=Parser)
    pa = pe_sub.add_parser("add", help="connect the running mount to a peer")
    pa.add_argument("addr", help="multiaddr ending in /p2p/<peer id>")
    return p


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.last = 0.0
        self.on = sys.stderr.isatty() and total > (8 << 20)

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.on and now - self.last > 0.1:
            self.last = now
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r[{bar:<30}] {frac:6.1%} {self.done >> 20} MiB")
            sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\r" + " " * 60 + "\r")


def cmd_add(cfg: config.Config, args: argparse.Namespace) -> int:
    for path in args.paths:
        if not path.exists() and not path.is_symlink():
            raise QuietError(f"{path}: no such file or directory")
    progress = _Progress(total_bytes(args.paths, args.hidden))
    with Store.open(cfg.home) as store:
        importer = Importer(store, hidden=args.hidden, private=args.private,
                            progress=progress)
        try:
            for path in args.paths:
                added = importer.add(path)
                progress.close()
                text = cidmod.to_str(added.cid)
                print(text if args.quiet else f"added {text} {path}", flush=True)
        except OSError as exc:
            progress.close()
            raise QuietError(f"{exc.filename or ''}: {exc.strerror or exc}") from None
    return 0


async def _cat(cfg: config.Config, store: Store, name: str, offset: int, length: int | None
               ) -> None:
    from casfs.services import open_node  # the read stack, only for commands that read

    async with trio.open_nursery() as nursery, open_node(cfg, store, nursery) as node:
        tree, reader = node.tree, node.reader
        first, *rest = name.strip("/").split("/")
        cid = await tree.resolve_root_name(first)
        for part in rest:
            cid = await tree.child(cid, part)
        st = await tree.stat(cid)
        if st.kind != Kind.FILE:
            raise QuietError(f"{name} is a {st.kind.name.lower()}, not a file")
        end = st.size if length is None else min(st.size, offset + length)
        out = sys.stdout.buffer
        for off in range(offset, end, 1 << 20):
            out.write(await reader.read(cid, off, min(1 << 20, end - off), st.size))
        out.flush()
        nursery.cancel_scope.cancel()


def _run(fn: Callable[..., Awaitable[object]], *args: object) -> None:
    """trio.run, re-raising the first real error out of an exception group (one line out)."""
    try:
        trio.run(fn, *args)
    except BaseExceptionGroup as group:
        leaves = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        raise (leaves[0] if leaves else group) from None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def cmd_cat(cfg: config.Config, args: argparse.Namespace) -> int:
    with Store.open(cfg.home) as store:
        try:
            _run(_cat, cfg, store, args.name, args.offset, args.length)
        except BadName:
            raise QuietError(f"{args.name}: not a CID or sha256") from None
        except BlockNotFound as exc:
            raise QuietError(f"{args.name}: not found ({exc})") from None
        except DeadlineExceeded as exc:
            raise QuietError(f"{args.name}: could not be fetched in time ({exc})") from None
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_mount(cfg: config.Config, args: argparse.Namespace, global_args: list[str]) -> int:
    from casfs import mount  # pyfuse3 and py-libp2p load slowly; other commands skip them

    mountpoint = args.mountpoint.absolute()
    if args.foreground:
        if args.notify_fd is None:
            mount.check_mountpoint(mountpoint)
        mount.run_foreground(cfg, mountpoint, args.notify_fd)
        return 0
    mount.check_mountpoint(mountpoint)
    mount_args: list[str] = []
    for flag, value in (("--ipfs-api", args.ipfs_api), ("--gateway", args.gateway),
                        ("--deadline", args.deadline)):
        if value is not None:
            mount_args += [flag, str(value)]
    mount.spawn(cfg, mountpoint, global_args, mount_args)
    return 0


def cmd_verify(cfg: config.Config, args: argparse.Namespace) -> int:
    from casfs.verify import verify

    with Store.open(cfg.home) as store:
        report = verify(store, repair=args.repair)
    for path in report.bad:
        print(f"bad block: {path}{' (dropped)' if args.repair else ''}")
    for root in report.incomplete:
        print(f"incomplete: {root}")
    print(f"{report.blocks} blocks checked, {len(report.bad)} bad, "
          f"{len(report.incomplete)} incomplete roots")
    return 0 if report.clean or (args.repair and not report.incomplete) else 1


def cmd_status(cfg: config.Config, args: argparse.Namespace) -> int:
    with Store.open(cfg.home) as store:
        facts = {"home": str(cfg.home), **store.index.counts()}
    pid = None
    try:
        pid = int(cfg.pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        pid = None
    facts["mount_pid"] = pid
    mounted: dict[str, object] = {}
    if pid is not None:
        try:
            mounted = json.loads(cfg.status_file.read_text())
        except (OSError, ValueError):
            pass
    sources: dict[str, dict[str, object]] = mounted.get("sources", {})  # type: ignore[assignment]
    facts["sources"] = sources
    for key in ("cache", "eviction", "quota_bytes", "strategy", "pinned_bytes", "replicas"):
        if key in mounted:
            facts[key] = mounted[key]
    if pid is not None:
        try:
            p2p = control.call(cfg.home, {"cmd": "id"}, timeout=5)
            facts["p2p"] = {k: p2p[k] for k in ("peer_id", "served_blocks", "served_bytes",
                                                "refused")}
            facts["p2p"]["peers"] = len(p2p["peers"])
        except (QuietError, KeyError, OSError):
            pass
    if args.json:
        print(json.dumps(facts))
        return 0
    for key, value in facts.items():
        if key not in ("sources", "p2p", "cache", "eviction", "replicas"):
            print(f"{key:12} {value}")
    for section in ("cache", "eviction"):
        for key, value in facts.get(section, {}).items():  # type: ignore[attr-defined]
            print(f"{key:12} {value}")
    for cid, n in facts.get("replicas", {}).items():  # type: ignore[attr-defined]
        print(f"replicas     {cid} {n}")
    for key, value in facts.get("p2p", {}).items():
        print(f"{key:12} {value}")
    if sources:
        print(f"{'source':40} {'hits':>7} {'bytes':>12} {'fails':>6} {'corrupt':>7} {'ms':>8}")
        for name, st in sources.items():
            print(f"{name:40} {st['hits']:>7} {st['bytes']:>12} {st['failures']:>6} "
                  f"{st['corrupt']:>7} {st['mean_latency_ms']:>8}{'  DOWN' if st['down'] else ''}")
    return 0


def cmd_config(cfg: config.Config, args: argparse.Namespace) -> int:
    for key, value in vars(cfg).items():
        print(f"{key} = {value}")
    return 0


def cmd_id(cfg: config.Config, args: argparse.Namespace) -> int:
    try:
        facts = control.call(cfg.home, {"cmd": "id"})
    except QuietError:  # no mount running: what the key file says
        from casfs.p2p import identity

        pair = identity.load_or_create(cfg.home)
        facts = {"peer_id": str(identity.peer_id(pair)), "did": identity.did_key(pair),
                 "addrs": []}
    facts = {k: facts[k] for k in ("peer_id", "did", "addrs")}
    if args.json:
        print(json.dumps(facts))
    else:
        print(f"peer id  {facts['peer_id']}\ndid      {facts['did']}")
        for addr in facts["addrs"] or ["(not listening: no mount is running)"]:
            print(f"address  {addr}")
    return 0


def cmd_peers(cfg: config.Config, args: argparse.Namespace) -> int:
    if args.peers_command == "add":
        if "/p2p/" not in args.addr:
            raise QuietError(f"{args.addr}: a peer address must end in /p2p/<peer id>")
        reply = control.call(cfg.home, {"cmd": "connect", "addr": args.addr})
        print(f"connected {reply['peer_id']}")
        return 0
    facts = control.call(cfg.home, {"cmd": "peers"})
    if args.json:
        print(json.dumps(facts["peers"]))
        return 0
    for p in facts["peers"]:
        print(f"{p['peer_id']}  trust {p['trust']:.2f}  {p['blocks']} blocks  "
              f"{p['latency_ms']} ms  {p['did']}")
    if not facts["peers"]:
        print("no peers connected")
    return 0


def _offline_cid(store: Store, name: str) -> bytes:
    async def resolve() -> bytes:
        from casfs.services import open_node

        async with open_node(config.load(store.home), store) as node:
            first, *rest = name.strip("/").split("/")
            cid = await node.tree.resolve_root_name(first)
            for part in rest:
                cid = await node.tree.child(cid, part)
            return cid

    try:
        return trio.run(resolve)
    except (BadName, BlockNotFound):
        raise QuietError(f"{name}: not found in the local store") from None


def cmd_pin(cfg: config.Config, args: argparse.Namespace) -> int:
    try:
        reply = control.call(cfg.home, {"cmd": "pin", "name": args.name})
    except QuietError as exc:
        if "no casfs mount is running" not in str(exc):
            raise
        with Store.open(cfg.home) as store:  # recorded now, fetched by the next mount
            cid = _offline_cid(store, args.name)
            store.index.add_pin(cid)
        print(f"pinned {cidmod.to_str(cid)} (completes when a mount is running)")
        return 0
    cid = reply["cid"]
    if not args.no_wait:
        bar = _Progress(0)
        bar.on = sys.stderr.isatty()
        deadline = time.monotonic() + 24 * 3600
        while time.monotonic() < deadline:
            state = control.call(cfg.home, {"cmd": "pin_progress", "name": cid})
            if not state["pinned"] or state["complete"]:
                break
            bar.total = max(state["known"], 1)
            bar(state["done"] - bar.done)
            time.sleep(0.2)
        bar.close()
    print(f"pinned {cid}")
    return 0


def cmd_unpin(cfg: config.Config, args: argparse.Namespace) -> int:
    try:
        reply = control.call(cfg.home, {"cmd": "unpin", "name": args.name})
        removed, cid = reply["removed"], reply["cid"]
    except QuietError as exc:
        if "no casfs mount is running" not in str(exc):
            raise
        with Store.open(cfg.home) as store:
            raw = _offline_cid(store, args.name)
            removed, cid = store.index.remove_pin(raw), cidmod.to_str(raw)
    if not removed:
        raise QuietError(f"{cid} was not pinned")
    print(f"unpinned {cid}")
    return 0


def cmd_swarm_key(cfg: config.Config, args: argparse.Namespace) -> int:
    from casfs.p2p import swarmkey

    path = cfg.home / "swarm.key"
    if args.key_command == "generate":
        if path.exists() and not args.force:
            raise QuietError(f"{path} exists; --force replaces it (peers must get the new one)")
        cfg.home.mkdir(parents=True, exist_ok=True)
        swarmkey.write(path, swarmkey.generate())
        print(f"wrote {path}; mounts started from now on join only peers with this key")
        return 0
    reply = control.call(cfg.home, {"cmd": "share_key", "peer": args.peer_id})
    print(f"{args.peer_id}: {reply['reply']}")
    return 0


def cmd_pins(cfg: config.Config, args: argparse.Namespace) -> int:
    with Store.open(cfg.home) as store:
        pins = [{"cid": cidmod.to_str(c), "complete": done, "reason": reason}
                for c, done, reason in store.index.pins()]
    if args.json:
        print(json.dumps(pins))
    for p in [] if args.json else pins:
        print(f"{p['cid']}  {'complete' if p['complete'] else 'fetching'}  {p['reason']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        cfg = config.load(args.home, args.config,
                          ipfs_api=getattr(args, "ipfs_api", None),
                          gateway_url=getattr(args, "gateway", None),
                          deadline=getattr(args, "deadline", None))
        global_args = [a for a in ("--debug",) if getattr(args, a[2:])]
        if args.config:
            global_args += ["--config", str(args.config)]
        handlers = {"add": cmd_add, "cat": cmd_cat, "verify": cmd_verify,
                    "status": cmd_status, "config": cmd_config, "id": cmd_id,
                    "peers": cmd_peers, "pin": cmd_pin, "unpin": cmd_unpin,
                    "pins": cmd_pins, "swarm-key": cmd_swarm_key}
        if args.command == "mount":
            return cmd_mount(cfg, args, global_args)
        if args.command == "umount":
            from casfs import mount

            mount.umount(cfg, args.mountpoint.absolute())
            return 0
        return handlers[args.command](cfg, args)
    except QuietError as exc:
        msg = str(exc)
        print(msg if msg.startswith("casfs") else f"casfs: {msg}", file=sys.stderr)
        return exc.exitcode
    except KeyboardInterrupt:
        print("casfs: interrupted", file=sys.stderr)
        return 130
    except (CasfsError, OSError) as exc:
        if debug:
            raise
        print(f"casfs: {exc}", file=sys.stderr)
        return 1
