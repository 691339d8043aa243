"""Misbehaving /cas/1.0.0 peers for tests, run as separate processes.

    python peer_tool.py liar              serves corrupt blocks for every CID; prints its address
    python peer_tool.py garbage ADDR      sends malformed frames to the node at ADDR, then exits
    python peer_tool.py getmany ADDR CID...  one GET_MANY for the CIDs; prints one line per
                                          reply: "BLOCK <sha256 of body>" or the reply type
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519
from libp2p.custom_types import TProtocol
from libp2p.network import swarm as _swarm
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from casfs.p2p import wire
from casfs.p2p.config import MAX_MANY, PROTOCOL_ID
from casfs.p2p.wire import Message, Msg

_swarm._HAPPY_EYEBALLS_DELAY = 0
LIFETIME = 300  # seconds: a forgotten tool process ends by itself


def make_host():  # type: ignore[no-untyped-def]
    pair = create_new_key_pair()
    noise = NoiseTransport(pair, noise_privkey=create_x25519().private_key)
    return new_host(key_pair=pair, sec_opt={NOISE_ID: noise}, muxer_preference="YAMUX")


async def liar() -> None:
    host = make_host()

    async def handle(stream):  # type: ignore[no-untyped-def]
        reader = wire.Reader(stream)
        try:
            while True:
                msg = await reader.read()
                if msg.type == Msg.HELLO:  # no Bloom filter: "ask me for anything"
                    reply = Message(Msg.HELLO, {"did": "did:key:liar"})
                elif msg.type == Msg.HAVE:
                    reply = Message(Msg.HAVE_REPLY, {"have": [True] * len(msg.header["cids"])})
                else:
                    reply = Message(Msg.BLOCK, msg.header, os.urandom(262144))
                await stream.write(wire.encode(reply))
        except Exception:  # noqa: BLE001 — a test tool: any error ends the stream
            await stream.reset()

    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        host.set_stream_handler(TProtocol(PROTOCOL_ID), handle)
        addr = str(host.get_addrs()[0])
        print(addr if "/p2p/" in addr else f"{addr}/p2p/{host.get_id()}", flush=True)
        await trio.sleep(LIFETIME)


async def garbage(addr: str) -> None:
    host = make_host()
    frames = [
        os.urandom(1000),  # noise
        struct.pack(">I", 0xFFFFFFF0) + b"x" * 100,  # absurd length prefix
        struct.pack(">IBI", 5, 99, 0),  # unknown message type
        struct.pack(">IBI", 9, 4, 4) + b"{{{{",  # header is not JSON
        struct.pack(">IBI", 5, 4, 1000),  # header longer than the frame
        wire.encode(Message(Msg.GET_MANY, {"cids": ["x"] * (MAX_MANY + 1)})),  # too many
        wire.encode(Message(Msg.GET_MANY, {"cids": "not a list"})),
        struct.pack(">I", 1 << 20) + b"short",  # truncated frame, then close
    ]
    resets = 0
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        with trio.fail_after(10):
            await host.connect(info)
        for frame in frames:
            with trio.move_on_after(3):
                stream = await host.new_stream(info.peer_id, [TProtocol(PROTOCOL_ID)])
                await stream.write(frame)
                try:
                    await stream.close()
                    data = await stream.read(100)
                    resets += not data
                except Exception:  # noqa: BLE001 — a reset is what we expect
                    resets += 1
    print(f"sent {len(frames)} bad frames, {resets} streams ended", flush=True)


async def getmany(addr: str, cids: list[str]) -> None:
    host = make_host()
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        with trio.fail_after(20):
            await host.connect(info)
            stream = await host.new_stream(info.peer_id, [TProtocol(PROTOCOL_ID)])
            await stream.write(wire.encode(Message(Msg.GET_MANY, {"cids": cids})))
            reader = wire.Reader(stream)
            for _ in cids:
                reply = await reader.read()
                body = f" {hashlib.sha256(reply.body).hexdigest()}" if reply.body else ""
                print(f"{reply.type.name}{body}", flush=True)
            await stream.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "liar":
        trio.run(liar)
    elif mode == "getmany":
        trio.run(getmany, sys.argv[2], sys.argv[3:])
    else:
        trio.run(garbage, sys.argv[2])
