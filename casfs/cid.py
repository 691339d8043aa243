"""CIDs as plain bytes, with fast paths for the forms casfs writes.

multiformats' CID object costs ~200 µs to parse and ~100 µs to print, which is more than a whole
FUSE lookup may take, so the hot path keeps CIDs as their binary CIDv1 form and only falls back
to multiformats for uncommon multibases and hash functions.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache

from multiformats import CID, multihash

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
IDENTITY = 0x00
_SHA256_PREFIX = b"\x12\x20"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# Longest name worth parsing: a CIDv1 with a 64-byte digest in base2 would be longer, but no
# tool prints that; refusing early keeps garbage names cheap.
_MAX_NAME = 200


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def make(codec: int, data: bytes | memoryview) -> bytes:
    """Binary CIDv1 (sha2-256) of a block."""
    return bytes((1, codec)) + _SHA256_PREFIX + hashlib.sha256(data).digest()


def raw_from_sha256(digest: bytes) -> bytes:
    return bytes((1, RAW)) + _SHA256_PREFIX + digest


def split(cid: bytes) -> tuple[int, bytes]:
    """(codec, multihash) of a binary CIDv1."""
    if len(cid) > 2 and cid[0] == 1 and cid[1] < 0x80:
        return cid[1], cid[2:]
    version, pos = _varint(cid, 0)
    if version != 1:
        raise ValueError("not a CIDv1")
    codec, pos = _varint(cid, pos)
    return codec, cid[pos:]


def codec_of(cid: bytes) -> int:
    return split(cid)[0]


def multihash_of(cid: bytes) -> bytes:
    return split(cid)[1]


def sha256_digest(cid: bytes) -> bytes | None:
    """The digest if the CID's hash is sha2-256 (the common case), else None."""
    mh = split(cid)[1]
    return mh[2:] if mh[:2] == _SHA256_PREFIX and len(mh) == 34 else None


@lru_cache(maxsize=65536)
def to_str(cid: bytes) -> str:
    """Canonical text form: CIDv1, multibase base32 lower, as kubo prints it."""
    return "b" + base64.b32encode(cid).decode().rstrip("=").lower()


def verify(cid: bytes, data: bytes | memoryview) -> bool:
    """True when data hashes to the CID's multihash."""
    mh = split(cid)[1]
    if mh[:2] == _SHA256_PREFIX:
        return hashlib.sha256(data).digest() == mh[2:]
    try:
        code, pos = _varint(mh, 0)
        if code == IDENTITY:
            length, pos = _varint(mh, pos)
            return mh[pos:] == bytes(data)
        return multihash.digest(bytes(data), code) == mh
    except (KeyError, ValueError):
        return False


def identity_data(cid: bytes) -> bytes | None:
    """Inline block bytes of an identity-hash CID, else None."""
    mh = split(cid)[1]
    if mh[:1] != b"\x00":
        return None
    length, pos = _varint(mh, 1)
    return mh[pos : pos + length]


def _from_multiformats(name: str) -> bytes | None:
    try:
        c = CID.decode(name)
    except Exception:  # multiformats raises many types for garbage; all mean "not a CID"
        return None
    if c.version == 0:
        c = c.set(version=1)
    try:
        return bytes(c)
    except Exception:
        return None


# RFC 4648 base32 (lower case) onto the digits int() reads in base 32. base64.b32decode is
# written in Python and was a fifth of a first lookup; translate() and int() run in C.
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_TO_INT32 = str.maketrans(_B32, "0123456789abcdefghijklmnopqrstuv")
_DROP_B32 = str.maketrans("", "", _B32)


def _b32decode(body: str) -> bytes | None:
    """Unpadded lower-case base32 to bytes; None if it is not valid base32."""
    nbytes, spare = divmod(len(body) * 5, 8)
    if spare >= 5 or not body or body.translate(_DROP_B32):  # bad length or characters
        return None
    value = int(body.translate(_TO_INT32), 32)
    if value & ((1 << spare) - 1):  # RFC 4648: the padding bits are zero
        return None
    return (value >> spare).to_bytes(nbytes, "big")


@lru_cache(maxsize=65536)
def parse(name: str) -> bytes | None:
    """Binary CIDv1 for a CID in any supported text form, or None."""
    if not 8 <= len(name) <= _MAX_NAME:
        return None
    if name[0] == "b" and name.islower():
        raw = _b32decode(name[1:])
        if raw is None:
            return None
        try:
            codec, mh = split(raw)
            code, pos = _varint(mh, 0)
            length, pos = _varint(mh, pos)
        except ValueError:
            return None
        if len(mh) != pos + length or codec not in (RAW, DAG_PB):
            return None
        return raw
    if name.startswith("Qm") and len(name) == 46:
        return _from_multiformats(name)
    cid = _from_multiformats(name)
    if cid is None or codec_of(cid) not in (RAW, DAG_PB):
        return None
    return cid


def parse_sha256(name: str) -> bytes | None:
    """The digest for a 64-hex name, else None."""
    if len(name) == 64 and _HEX64.fullmatch(name):
        return bytes.fromhex(name)
    return None
