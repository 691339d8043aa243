"""Frames on a /cas/1.0.0 stream: length-prefixed, one message each.

frame   = u32 length (big-endian) | u8 type | u32 header length | JSON header | binary body
Reads are framed here rather than with py-libp2p's read_exactly, which gives up after 100
partial reads (FACTS.md).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

from casfs.p2p.config import MAX_FRAME, MAX_HEADER

_LEN = struct.Struct(">I")
_HEAD = struct.Struct(">BI")


class ProtocolError(Exception):
    """The peer broke the protocol: reset the stream."""


class Msg(IntEnum):
    HELLO = 1  # capabilities: did, ipfs node info, bloom (body), bandwidth limit
    HAVE = 2  # header {"cids": [...]} -> HAVE_REPLY {"have": [bool, ...]}
    HAVE_REPLY = 3
    GET = 4  # header {"cid"} -> BLOCK (body = bytes) | NOT_FOUND | REFUSED
    BLOCK = 5
    NOT_FOUND = 6
    REFUSED = 7  # header {"reason"}
    PIN = 8  # header {"cid"} -> PIN_REPLY {"ok", "reason"}
    PIN_REPLY = 9
    KEY = 10  # body = a swarm.key sealed to the receiver's key -> KEY_REPLY {"ok", "reason"}
    KEY_REPLY = 11
    GET_MANY = 12  # header {"cids": [...]} -> one GET reply per cid, in order, same stream


@dataclass
class Message:
    type: Msg
    header: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""


class Stream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


def encode(msg: Message) -> bytes:
    header = json.dumps(msg.header, separators=(",", ":")).encode()
    size = _HEAD.size + len(header) + len(msg.body)
    if size > MAX_FRAME or len(header) > MAX_HEADER:
        raise ProtocolError(f"frame of {size} bytes is over the limit")
    return _LEN.pack(size) + _HEAD.pack(int(msg.type), len(header)) + header + msg.body


class Reader:
    """Buffers a stream and returns whole messages."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = await self.stream.read(max(65536, n - len(self.buf)))
            if not chunk:
                raise EOFError("stream closed")
            self.buf += chunk

    async def read(self) -> Message:
        await self._fill(_LEN.size)
        (size,) = _LEN.unpack_from(self.buf)
        if not _HEAD.size <= size <= MAX_FRAME:
            raise ProtocolError(f"frame length {size} out of bounds")
        await self._fill(_LEN.size + size)
        kind, hlen = _HEAD.unpack_from(self.buf, _LEN.size)
        if hlen > min(MAX_HEADER, size - _HEAD.size):
            raise ProtocolError("header length out of bounds")
        start = _LEN.size + _HEAD.size
        try:
            mtype = Msg(kind)
            header = json.loads(self.buf[start : start + hlen]) if hlen else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"bad message: {exc}") from None
        if not isinstance(header, dict):
            raise ProtocolError("header is not an object")
        body = bytes(self.buf[start + hlen : _LEN.size + size])  # the one copy out
        del self.buf[: _LEN.size + size]
        return Message(mtype, header, body)
