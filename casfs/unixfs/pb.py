"""The few protobuf wire-format pieces dag-pb and UnixFS need.

Written by hand because dag-pb's canonical form (Links before Data) is not what a stock
protobuf serializer emits, and a different byte order would give different CIDs.
"""

from __future__ import annotations

from collections.abc import Iterator

from casfs.cid import _varint as read_varint
from casfs.cid import encode_varint

VARINT = 0
LEN = 2


def key(field: int, wire: int) -> bytes:
    return encode_varint(field << 3 | wire)


def len_field(field: int, payload: bytes) -> bytes:
    return key(field, LEN) + encode_varint(len(payload)) + payload


def varint_field(field: int, value: int) -> bytes:
    return key(field, VARINT) + encode_varint(value)


def fields(buf: bytes | memoryview, start: int = 0, end: int | None = None
           ) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field, wire, value, payload_offset) for each field in buf[start:end].

    For VARINT fields value is the integer; for LEN fields it is the payload length and the
    payload is buf[payload_offset:payload_offset + value].
    """
    pos = start
    end = len(buf) if end is None else end
    while pos < end:
        tag, pos = read_varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
            yield field, wire, value, pos
        elif wire == LEN:
            length, pos = read_varint(buf, pos)
            if pos + length > end:
                raise ValueError("length runs past the end")
            yield field, wire, length, pos
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
