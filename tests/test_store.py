"""The store on real SQLite and real files: checksums, damage, atomic writes, verify."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import random_file

from casfs import cid as cidmod
from casfs.errors import BlockCorrupt, BlockNotFound
from casfs.importer import Importer
from casfs.store import Store, blockfile
from casfs.verify import verify


def test_put_get_and_dedupe(home: Path) -> None:
    with Store.open(home) as store:
        data = os.urandom(300_000)
        c = cidmod.make(cidmod.RAW, data)
        assert store.put(c, data)
        assert not store.put(c, data)
        assert store.get(c) == data
        with pytest.raises(BlockNotFound):
            store.get(cidmod.make(cidmod.RAW, b"absent"))


def flip(path: str, offset_from_end: int = 100) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(-offset_from_end, os.SEEK_END)
        b = f.read(1)
        f.seek(-offset_from_end, os.SEEK_END)
        f.write(bytes([b[0] ^ 1]))


@pytest.mark.expect_warnings
def test_damaged_block_is_never_returned(home: Path) -> None:
    with Store.open(home) as store:
        data = os.urandom(100_000)
        c = cidmod.make(cidmod.RAW, data)
        store.put(c, data)
        flip(store.path(c))
        with pytest.raises(BlockCorrupt):
            store.get(c)
        fd = store.open_block(c)
        try:
            head = blockfile.read_header(fd)
            out = bytearray(4096)
            blockfile.read_into(fd, head, memoryview(out), 0, bytearray())  # segment 0 is fine
            assert out == data[:4096]
            with pytest.raises(BlockCorrupt):  # the last one is not
                blockfile.read_into(fd, head, memoryview(out), len(data) - 4096, bytearray())
            whole = bytearray(len(data))
            with pytest.raises(BlockCorrupt):  # nor the block read whole (one-sum check)
                blockfile.read_into(fd, head, memoryview(whole), 0, bytearray())
        finally:
            os.close(fd)


def test_v1_block_files_still_read(tmp_path: Path) -> None:
    """Block files written before the whole-block sum (CAS1) are read and checked by segment."""
    data = os.urandom(50_000)
    v2 = blockfile.encode_header(data)
    sums = v2[16:]  # after magic, length and the whole-block sum
    path = tmp_path / "blk"
    path.write_bytes(b"CAS1" + v2[4:8] + sums + data)
    fd = os.open(path, os.O_RDONLY)
    try:
        head = blockfile.read_header(fd)
        assert head.whole is None and head.length == len(data)
        out = bytearray(len(data))
        blockfile.read_into(fd, head, memoryview(out), 0, bytearray())
        assert out == data and blockfile.read_all(fd) == data
    finally:
        os.close(fd)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(BlockCorrupt):
            blockfile.read_all(fd)
    finally:
        os.close(fd)


@pytest.mark.expect_warnings
def test_verify_reports_and_repairs(home: Path, tmp_path: Path) -> None:
    f = random_file(tmp_path / "f", 1_000_000)
    with Store.open(home) as store:
        root = Importer(store).add(f).cid
        assert verify(store).clean
        leaf = next(p for p, mh in store.iter_block_files()
                    if cidmod.make(cidmod.RAW, b"") != mh and os.path.getsize(p) > 200_000)
        flip(leaf)
        report = verify(store)
        assert report.bad == [leaf]
        assert verify(store, repair=True).bad == [leaf]
        assert not os.path.exists(leaf)
        report = verify(store)
        assert not report.bad and report.incomplete == [cidmod.to_str(root)]


def test_interrupted_writer_leaves_no_block(home: Path) -> None:
    # A temp file of a writer that died (pid 999999999 cannot exist) is swept away at open.
    (home / "tmp").mkdir(parents=True)
    (home / "tmp" / "999999999-1").write_bytes(b"partial")
    with Store.open(home):
        pass
    assert not (home / "tmp" / "999999999-1").exists()


def test_sha256_and_roots_recorded(home: Path, tmp_path: Path) -> None:
    import hashlib

    f = random_file(tmp_path / "f", 600_000)
    with Store.open(home) as store:
        root = Importer(store).add(f).cid
        assert store.index.by_sha256(hashlib.sha256(f.read_bytes()).digest()) == root
        assert [r.cid for r in store.index.roots()] == [root]
