#!/usr/bin/env python3
"""Raw py-libp2p stream transfer: the baseline process pair of scripts/bench_peers.py.

    raw_libp2p_peer.py serve FILE [--lifetime S]
        Listen on 127.0.0.1 (a free TCP port) and print one JSON line {"addr": full multiaddr with
        /p2p/<id>}. Each stream of PROTOCOL gets the whole FILE as 256 KiB frames (4-byte
        big-endian length, then the bytes), ended by a zero-length frame. Runs until SIGTERM, its
        parent exits, or --lifetime seconds pass.

    raw_libp2p_peer.py fetch ADDR --size N [--sha256] [--timeout S]
        Connect to ADDR (not timed: a casfs node is connected by its bootstrap before a read
        starts), then time opening one stream and reading every frame. Prints one JSON line
        {"bytes", "seconds", "connect_s", "mbps"[, "sha256"]}. Exit 1 on any failure.

Both sides are configured like the casfs peer network should be (FACTS.md, py-libp2p): noise only
(trap 1), yamux, and _HAPPY_EYEBALLS_DELAY = 0 (trap 4). Every network call runs under a deadline
(trap 3), and the stream handler cannot raise (trap 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network import swarm as libp2p_swarm
from libp2p.network.stream.net_stream import INetStream
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

PROTOCOL = TProtocol("/casfs-bench/raw/1.0.0")
FRAME = 256 * 1024
HEADER = struct.Struct(">I")
READ_SIZE = 1 << 20  # yamux returns what it has buffered, up to this
REQUEST = b"GET\n"
CONNECT_TIMEOUT_S = 10.0
PARENT_POLL_S = 0.5
DEFAULT_LIFETIME_S = 3600.0
# A transfer slower than this (bytes/s) is treated as hung; FACTS measured ~112 MB/s.
MIN_RATE = 5e6
MIN_TRANSFER_TIMEOUT_S = 60.0


def make_host() -> IHost:
    # Every connect() would otherwise wait a fixed 250 ms before dialling (FACTS trap 4).
    libp2p_swarm._HAPPY_EYEBALLS_DELAY = 0  # type: ignore[attr-defined]
    key_pair = create_new_key_pair()
    noise_key = create_new_x25519_key_pair().private_key
    return new_host(
        key_pair=key_pair,
        # Noise only: the default also accepts plaintext/secio (FACTS trap 1).
        sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=noise_key)},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
    )


# --------------------------------------------------------------------------- server


def make_handler(
    path: Path, size: int, send_timeout: float
) -> Callable[[INetStream], Awaitable[None]]:
    async def handler(stream: INetStream) -> None:
        # An exception escaping a handler takes the whole host down (FACTS trap 2).
        try:
            with trio.fail_after(send_timeout):
                await stream.read(len(REQUEST))
                with open(path, "rb", buffering=0) as f:
                    for _ in range(size // FRAME + 2):
                        chunk = f.read(FRAME)
                        # One write per frame: header and payload together, as a real block
                        # protocol would send a block.
                        await stream.write(HEADER.pack(len(chunk)) + chunk)
                        if not chunk:
                            break
                await stream.close()
        except Exception as exc:  # trio.Cancelled is a BaseException and still propagates
            print(f"serve: stream failed: {exc!r}", file=sys.stderr)
            try:
                await stream.reset()
            except Exception:  # the stream is gone either way
                pass

    return handler


async def watch_parent(lifetime: float) -> None:
    """Return when the parent process is gone or the lifetime is over (no orphaned servers)."""
    parent = os.getppid()
    for _ in range(int(lifetime / PARENT_POLL_S) + 1):
        if os.getppid() != parent:
            return
        await trio.sleep(PARENT_POLL_S)


async def serve(path: Path, lifetime: float) -> None:
    size = path.stat().st_size
    host = make_host()
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    send_timeout = max(MIN_TRANSFER_TIMEOUT_S, size / MIN_RATE)
    async with host.run(listen_addrs=listen):
        host.set_stream_handler(PROTOCOL, make_handler(path, size, send_timeout))
        addrs = [str(a) for a in host.get_addrs() if "/p2p/" in str(a)]
        if not addrs:
            peer = host.get_id().to_string()
            addrs = [f"{a}/p2p/{peer}" for a in host.get_addrs()]
        print(json.dumps({"addr": addrs[0], "addrs": addrs}), flush=True)
        await watch_parent(lifetime)


# --------------------------------------------------------------------------- client


async def fetch(addr: str, size: int, want_sha: bool, timeout: float) -> dict[str, object]:
    host = make_host()
    info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
    digest = hashlib.sha256() if want_sha else None
    got = 0
    # The client listens nowhere; run() still needs a list.
    async with host.run(listen_addrs=[]):
        t0 = time.perf_counter()
        with trio.fail_after(CONNECT_TIMEOUT_S):
            await host.connect(info)
        t1 = time.perf_counter()
        with trio.fail_after(timeout):
            stream = await host.new_stream(info.peer_id, [PROTOCOL])
            await stream.write(REQUEST)
            buf = bytearray()
            done = False
            # Bounded: at most one read per 1 KiB of data (reads return ≥ a noise frame),
            # and the deadline above.
            for _ in range(size // 1024 + 1024):
                data = await stream.read(READ_SIZE)
                if not data:
                    break
                buf += data
                # Frames are parsed here (not with read_exactly, FACTS trap 8).
                pos = 0
                while len(buf) - pos >= HEADER.size:
                    (n,) = HEADER.unpack_from(buf, pos)
                    if n == 0:
                        done = True
                        pos += HEADER.size
                        break
                    if len(buf) - pos - HEADER.size < n:
                        break
                    if digest is not None:
                        digest.update(memoryview(buf)[pos + HEADER.size : pos + HEADER.size + n])
                    got += n
                    pos += HEADER.size + n
                del buf[:pos]
                if done:
                    break
            t2 = time.perf_counter()
            await stream.close()
    if not done or got != size:
        raise RuntimeError(f"received {got} of {size} bytes (end frame seen: {done})")
    seconds = t2 - t1
    out: dict[str, object] = {
        "bytes": got,
        "seconds": seconds,
        "connect_s": t1 - t0,
        "mbps": got / seconds / 1e6,
    }
    if digest is not None:
        out["sha256"] = digest.hexdigest()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("file", type=Path)
    p_serve.add_argument("--lifetime", type=float, default=DEFAULT_LIFETIME_S)
    p_fetch = sub.add_parser("fetch")
    p_fetch.add_argument("addr")
    p_fetch.add_argument("--size", type=int, required=True)
    p_fetch.add_argument("--sha256", action="store_true")
    p_fetch.add_argument("--timeout", type=float, default=0.0)
    args = parser.parse_args()
    # libp2p logs connection chatter at WARNING; only errors matter to the benchmark.
    logging.basicConfig(level=logging.ERROR)
    if args.cmd == "serve":
        trio.run(serve, args.file, args.lifetime)
        return 0
    timeout = args.timeout or max(MIN_TRANSFER_TIMEOUT_S, args.size / MIN_RATE)
    try:
        result = trio.run(fetch, args.addr, args.size, args.sha256, timeout)
    except Exception as exc:  # reported to the benchmark as one line
        print(f"fetch failed: {exc!r}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
