"""The UnixFS/dag-pb codec and the balanced builder, against the spec and known vectors."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from casfs import cid as cidmod
from casfs.unixfs import CHUNK_SIZE, MAX_LINKS, FileBuilder, Kind, Link, decode
from casfs.unixfs.node import encode_directory, encode_pbnode, encode_unixfs


def build(data: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    blocks: dict[bytes, bytes] = {}
    written: list[int] = []

    def put(c: bytes, d: bytes) -> None:
        blocks[c] = d
        written.append(len(d))

    b = FileBuilder(put)
    for i in range(0, len(data), 100_000):  # odd write sizes on purpose
        b.write(data[i : i + 100_000])
    root, size, tsize = b.finish()
    assert size == len(data)
    assert tsize == sum(written)  # every block of the DAG, duplicates included
    return root, blocks


def content(root: bytes, blocks: dict[bytes, bytes]) -> bytes:
    node = decode(root, blocks[root])
    block = blocks[root]
    own = bytes(block[node.data_offset : node.data_offset + node.data_length]) \
        if cidmod.codec_of(root) == cidmod.DAG_PB else block
    return own + b"".join(content(link.cid, blocks) for link in node.links)


def depth(root: bytes, blocks: dict[bytes, bytes]) -> int:
    node = decode(root, blocks[root])
    return 0 if not node.links else 1 + depth(node.links[0].cid, blocks)


def test_known_cids() -> None:
    # Well-known CIDs printed by kubo for the empty file and "hello\n" with raw leaves.
    assert cidmod.to_str(build(b"")[0]) == \
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert cidmod.to_str(build(b"hello\n")[0]) == \
        "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"
    # The empty UnixFS directory, CIDv1.
    empty_dir = encode_directory([])
    assert cidmod.to_str(cidmod.make(cidmod.DAG_PB, empty_dir)) == \
        "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


@pytest.mark.parametrize("size", [1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1,
                                  MAX_LINKS * CHUNK_SIZE, MAX_LINKS * CHUNK_SIZE + 1])
def test_builder_roundtrip_and_shape(size: int) -> None:
    data = hashlib.shake_256(str(size).encode()).digest(size)
    root, blocks = build(data)
    assert content(root, blocks) == data
    leaves = -(-size // CHUNK_SIZE)
    if leaves == 1:
        assert cidmod.codec_of(root) == cidmod.RAW
    else:
        assert depth(root, blocks) == (1 if leaves <= MAX_LINKS else 2)
    for c, block in blocks.items():
        assert cidmod.verify(c, block)


def test_balanced_layout_175_leaves() -> None:
    data = bytes(175 * CHUNK_SIZE)  # all-zero leaves dedupe to one block; shape still counts
    root, blocks = build(data)
    node = decode(root, blocks[root])
    assert node.kind == Kind.FILE and node.filesize == len(data)
    assert list(node.blocksizes) == [174 * CHUNK_SIZE, CHUNK_SIZE]
    second = decode(node.links[1].cid, blocks[node.links[1].cid])
    assert len(second.links) == 1  # the last subtree is a real one-child node, as kubo builds


def test_dagpb_links_before_data() -> None:
    link = Link(cidmod.make(cidmod.RAW, b"x"), "name", 1)
    block = encode_pbnode([link], encode_unixfs(Kind.DIRECTORY))
    assert block[0] == 0x12  # field 2 (Links), wire type 2
    assert block[-4:] == b"\x0a\x02\x08\x01"  # then Data = {Type: Directory}


def test_directory_links_sorted_by_bytes() -> None:
    a = cidmod.make(cidmod.RAW, b"a")
    links = [Link(a, "b", 1), Link(a, "B", 1), Link(a, "ä", 1), Link(a, "a", 1)]
    node = decode(cidmod.make(cidmod.DAG_PB, encode_directory(links)), encode_directory(links))
    assert [link.name for link in node.links] == ["B", "a", "b", "ä"]


@pytest.mark.parametrize("garbage", [b"\xff", b"\x12\x05abc", b"\x0a\x02\x08\x63", b""])
def test_decode_garbage_is_an_error_not_a_crash(garbage: bytes) -> None:
    from casfs.errors import BlockCorrupt, UnsupportedContent

    with pytest.raises((BlockCorrupt, UnsupportedContent)):
        decode(cidmod.make(cidmod.DAG_PB, garbage), garbage)


def test_parse_names() -> None:
    v1 = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am"
    assert cidmod.to_str(cidmod.parse(v1)) == v1
    v0 = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
    assert cidmod.to_str(cidmod.parse(v0)) == \
        "bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    # base58btc CIDv1 of the same raw block
    assert cidmod.parse("zb2rhmy65F3REf8SZp7De11gxtECBGgUKaLdiDj7MCGCHxbDW") is not None
    for bad in ["", "hello", "b" + "a" * 58, "Qm" + "x" * 44, v1[:-1], v1.upper()[1:], "x" * 300,
                v1[:-1] + "1", v1[:-1] + "8", v1[:-1] + "!",
                v1[:-1] + "b"]:  # "b" sets padding bits
        assert cidmod.parse(bad) is None, bad


def test_base32_decoder_matches_the_stdlib() -> None:
    """cid._b32decode (translate + int, for speed) against base64's reference decoder."""
    rng = random.Random(7)
    for n in range(1, 70):
        data = rng.randbytes(n)
        text = base64.b32encode(data).decode().rstrip("=").lower()
        assert cidmod._b32decode(text) == data
    for _ in range(5000):
        text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567019!") for _ in range(12))
        got = cidmod._b32decode(text)
        if got is not None:
            assert got == base64.b32decode(text.upper() + "====")
    assert cidmod.parse_sha256("ab" * 32) == bytes.fromhex("ab" * 32)
    assert cidmod.parse_sha256("zz" * 32) is None
