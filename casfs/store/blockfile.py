"""On-disk block files: the block's bytes behind a header of checksums.

Layout: b"CAS2", uint32 length L, the xxh3-64 of all L bytes, then one xxh3-64 per 16 KiB
segment of the data, then the data. (b"CAS1" files, written before, lack the whole-block sum.)
Re-hashing SHA-256 on every local read would cap cold reads near 1.8 GB/s per core; xxh3 runs
at memory speed. Per-segment sums let a 4 KiB random read check 16 KiB instead of 256 KiB; the
whole-block sum lets a sequential reader check a block in one call instead of sixteen.
The CID itself is checked when a block enters the store and by `casfs verify`.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

import xxhash

from casfs.errors import BlockCorrupt

MAGIC = b"CAS2"
MAGIC_V1 = b"CAS1"
SEGMENT = 16384
_HEAD = struct.Struct("<4sI")
_WHOLE = struct.Struct("<Q")
# Enough to hold the header of any block up to 8 MiB in one read.
PROBE = 4096


class Header(NamedTuple):
    length: int  # of the data
    base: int  # file offset where the data starts
    whole: int | None  # xxh3 of the whole data (None in CAS1 files)
    sums: tuple[int, ...]  # xxh3 of each segment


def _nseg(length: int) -> int:
    return -(-length // SEGMENT)


def encode_header(data: bytes | memoryview) -> bytes:
    view = memoryview(data)
    sums = [xxhash.xxh3_64_intdigest(view[i : i + SEGMENT]) for i in range(0, len(view), SEGMENT)]
    return (_HEAD.pack(MAGIC, len(view)) + _WHOLE.pack(xxhash.xxh3_64_intdigest(view))
            + struct.pack(f"<{len(sums)}Q", *sums))


def parse_header(head: bytes) -> Header:
    """The header from the first bytes of a block file."""
    if len(head) < _HEAD.size:
        raise BlockCorrupt("block file shorter than its header")
    magic, length = _HEAD.unpack_from(head)
    if magic == MAGIC:
        if len(head) < _HEAD.size + _WHOLE.size:
            raise BlockCorrupt("block file header is truncated")
        (whole,) = _WHOLE.unpack_from(head, _HEAD.size)
        at = _HEAD.size + _WHOLE.size
    elif magic == MAGIC_V1:
        whole, at = None, _HEAD.size
    else:
        raise BlockCorrupt("block file has a bad magic number")
    nseg = _nseg(length)
    if len(head) < at + 8 * nseg:
        raise BlockCorrupt("block file header is truncated")
    return Header(length, at + 8 * nseg, whole, struct.unpack_from(f"<{nseg}Q", head, at))


def read_header(fd: int) -> Header:
    return parse_header(os.pread(fd, PROBE, 0))


def check(view: memoryview, first_segment: int, sums: tuple[int, ...]) -> None:
    """Check whole segments in view, which starts at segment number first_segment."""
    for i, start in enumerate(range(0, len(view), SEGMENT), first_segment):
        if xxhash.xxh3_64_intdigest(view[start : start + SEGMENT]) != sums[i]:
            raise BlockCorrupt(f"checksum mismatch in segment {i}")


def read_into(fd: int, head: Header, out: memoryview, start: int, scratch: bytearray) -> None:
    """Copy block bytes [start, start + len(out)) of an open block file into out, checked.

    A whole block is read straight into out and checked in one call; otherwise whole segments
    are read (into out when the range is segment-aligned, else through scratch) and checked."""
    length = head.length
    end = start + len(out)
    if end > length:
        raise BlockCorrupt("block file is shorter than the range asked for")
    seg0 = start // SEGMENT
    seg_start = seg0 * SEGMENT
    seg_end = min(-(-end // SEGMENT) * SEGMENT, length)
    if seg_start == start and seg_end == end:
        target = out
    else:
        if len(scratch) < seg_end - seg_start:
            scratch.extend(bytes(seg_end - seg_start - len(scratch)))
        target = memoryview(scratch)[: seg_end - seg_start]
    got = os.preadv(fd, [target], head.base + seg_start)
    if got != len(target):
        raise BlockCorrupt("block file is truncated")
    if head.whole is not None and start == 0 and end == length:
        if xxhash.xxh3_64_intdigest(target) != head.whole:
            raise BlockCorrupt("checksum mismatch")
    else:
        check(target, seg0, head.sums)
    if target is not out:
        out[:] = target[start - seg_start : end - seg_start]


def read_all(fd: int) -> bytes:
    """The whole checked block."""
    head = read_header(fd)
    data = os.pread(fd, head.length, head.base)
    if len(data) != head.length:
        raise BlockCorrupt("block file is truncated")
    if head.whole is not None:
        if xxhash.xxh3_64_intdigest(data) != head.whole:
            raise BlockCorrupt("checksum mismatch")
    else:
        check(memoryview(data), 0, head.sums)
    return data
