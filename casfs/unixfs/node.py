"""dag-pb nodes carrying UnixFS data: encoding to the canonical form and decoding.

dag-pb: PBNode { repeated PBLink Links = 2; optional bytes Data = 1; } written Links first;
PBLink { bytes Hash = 1; string Name = 2; uint64 Tsize = 3; }.
UnixFS Data { Type = 1; Data = 2; filesize = 3; repeated blocksizes = 4 (not packed); ... }.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from casfs import cid as cidmod
from casfs.errors import BlockCorrupt, UnsupportedContent
from casfs.unixfs import pb


class Kind(IntEnum):
    RAW = 0  # UnixFS "Raw" leaf; read like a file
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class Link:
    cid: bytes
    name: str
    tsize: int


@dataclass(frozen=True, slots=True)
class Node:
    """A decoded block. Raw-codec blocks are FILE nodes whose content is the whole block."""

    kind: Kind
    links: tuple[Link, ...] = ()
    # Where this node's own content bytes sit inside the block (raw leaves: all of it).
    data_offset: int = 0
    data_length: int = 0
    filesize: int = 0
    blocksizes: tuple[int, ...] = field(default=())

    @property
    def is_dir(self) -> bool:
        return self.kind == Kind.DIRECTORY


def encode_unixfs(kind: Kind, data: bytes = b"", filesize: int | None = None,
                  blocksizes: tuple[int, ...] | list[int] = ()) -> bytes:
    out = [pb.varint_field(1, int(kind))]
    if data:
        out.append(pb.len_field(2, data))
    if filesize is not None:
        out.append(pb.varint_field(3, filesize))
    out.extend(pb.varint_field(4, size) for size in blocksizes)
    return b"".join(out)


def encode_pbnode(links: list[Link] | tuple[Link, ...], data: bytes | None) -> bytes:
    out = []
    for link in links:
        body = pb.len_field(1, link.cid) + pb.len_field(2, link.name.encode())
        out.append(pb.len_field(2, body + pb.varint_field(3, link.tsize)))
    if data is not None:
        out.append(pb.len_field(1, data))
    return b"".join(out)


def encode_file(links: list[Link], blocksizes: list[int]) -> bytes:
    """An internal UnixFS File node over its children (no inline data, as kubo writes it)."""
    unixfs = encode_unixfs(Kind.FILE, filesize=sum(blocksizes), blocksizes=blocksizes)
    return encode_pbnode(links, unixfs)


def encode_directory(links: list[Link]) -> bytes:
    """A UnixFS Directory node; links sorted by the bytes of their names, as dag-pb requires."""
    ordered = sorted(links, key=lambda link: link.name.encode())
    return encode_pbnode(ordered, encode_unixfs(Kind.DIRECTORY))


def _decode_link(buf: memoryview, start: int, end: int) -> Link:
    hash_ = b""
    name = ""
    tsize = 0
    for fno, wire, value, off in pb.fields(buf, start, end):
        if fno == 1 and wire == pb.LEN:
            hash_ = bytes(buf[off : off + value])
        elif fno == 2 and wire == pb.LEN:
            name = bytes(buf[off : off + value]).decode("utf-8", "surrogateescape")
        elif fno == 3 and wire == pb.VARINT:
            tsize = value
    if not hash_:
        raise ValueError("link without hash")
    if hash_[0] != 1:  # CIDv0 link: bare sha2-256 multihash
        hash_ = bytes((1, cidmod.DAG_PB)) + hash_
    return Link(hash_, name, tsize)


def decode(cid: bytes, block: bytes | memoryview) -> Node:
    """Decode a block whose hash was already checked. Raises BlockCorrupt or UnsupportedContent."""
    codec = cidmod.codec_of(cid)
    if codec == cidmod.RAW:
        return Node(Kind.FILE, data_length=len(block), filesize=len(block))
    if codec != cidmod.DAG_PB:
        raise UnsupportedContent(f"codec 0x{codec:x} is not a UnixFS codec")
    buf = memoryview(block)
    links: list[Link] = []
    data_span: tuple[int, int] | None = None
    try:
        for fno, wire, value, off in pb.fields(buf):
            if fno == 2 and wire == pb.LEN:
                links.append(_decode_link(buf, off, off + value))
            elif fno == 1 and wire == pb.LEN:
                data_span = (off, off + value)
        if data_span is None:
            raise UnsupportedContent("dag-pb node without UnixFS data")
        return _decode_unixfs(buf, data_span, tuple(links))
    except ValueError as exc:
        raise BlockCorrupt(f"malformed dag-pb block: {exc}") from exc


def _decode_unixfs(buf: memoryview, span: tuple[int, int], links: tuple[Link, ...]) -> Node:
    kind: int | None = None
    data_offset = data_length = 0
    filesize: int | None = None
    blocksizes: list[int] = []
    for fno, wire, value, off in pb.fields(buf, *span):
        if fno == 1 and wire == pb.VARINT:
            kind = value
        elif fno == 2 and wire == pb.LEN:
            data_offset, data_length = off, value
        elif fno == 3 and wire == pb.VARINT:
            filesize = value
        elif fno == 4 and wire == pb.VARINT:
            blocksizes.append(value)
        elif fno == 4 and wire == pb.LEN:  # tolerate packed encoding from other writers
            for _, _, size, _ in pb.fields(bytes(buf[off : off + value])):
                blocksizes.append(size)
    if kind is None or kind not in Kind.__members__.values():
        raise UnsupportedContent(f"unknown UnixFS type {kind}")
    kind = Kind(kind)
    if kind == Kind.HAMT_SHARD:
        raise UnsupportedContent("HAMT-sharded directories are not supported yet")
    if kind in (Kind.FILE, Kind.RAW):
        if len(blocksizes) != len(links):
            raise ValueError("blocksizes and links disagree")
        total = data_length + sum(blocksizes)
        if filesize is not None and filesize != total:
            raise ValueError("filesize disagrees with content")
        filesize = total
    return Node(kind, links, data_offset, data_length, filesize or 0, tuple(blocksizes))
