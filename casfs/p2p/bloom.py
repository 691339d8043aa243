"""A Bloom filter of the blocks a node holds, sent to peers so they ask only likely holders.

Items are multihashes, already uniformly random, so the k bit positions are slices of the
digest itself rather than k further hashes.
"""

from __future__ import annotations

import math
import struct

from casfs.p2p.config import BLOOM_FP_RATE, BLOOM_MIN_ITEMS

_HDR = struct.Struct(">IB")  # bits, k


class Bloom:
    def __init__(self, bits: int, k: int, data: bytearray | None = None) -> None:
        self.bits = max(8, bits)
        self.k = max(1, min(k, 8))
        self.data = data if data is not None else bytearray((self.bits + 7) // 8)

    @classmethod
    def for_items(cls, n: int, fp: float = BLOOM_FP_RATE) -> Bloom:
        n = max(n, BLOOM_MIN_ITEMS)
        bits = int(-n * math.log(fp) / (math.log(2) ** 2))
        return cls(bits, round(bits / n * math.log(2)))

    def _positions(self, mh: bytes) -> list[int]:
        digest = mh[-32:] if len(mh) >= 34 else mh.ljust(32, b"\0")
        return [int.from_bytes(digest[4 * i : 4 * i + 4], "big") % self.bits
                for i in range(self.k)]

    def add(self, mh: bytes) -> None:
        for p in self._positions(mh):
            self.data[p >> 3] |= 1 << (p & 7)

    def __contains__(self, mh: bytes) -> bool:
        return all(self.data[p >> 3] & (1 << (p & 7)) for p in self._positions(mh))

    def encode(self) -> bytes:
        return _HDR.pack(self.bits, self.k) + bytes(self.data)

    @classmethod
    def decode(cls, raw: bytes) -> Bloom | None:
        if len(raw) < _HDR.size:
            return None
        bits, k = _HDR.unpack_from(raw)
        data = bytearray(raw[_HDR.size :])
        if len(data) != (bits + 7) // 8 or bits < 8:
            return None
        return cls(bits, k, data)
