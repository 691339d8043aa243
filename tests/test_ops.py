"""Operations driven directly (no kernel): the FUSE semantics on a real temp store."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyfuse3
import pytest
import trio
from conftest import random_file

from casfs import cid as cidmod
from casfs.dag import Dag
from casfs.fetcher import BlockFetcher
from casfs.fs import Operations
from casfs.importer import Importer
from casfs.inodes import ROOT
from casfs.reader import Reader
from casfs.store import Store
from casfs.tree import Tree

CTX = None  # the handlers under test never look at the request context


def make_ops(store: Store) -> Operations:
    fetcher = BlockFetcher(store)
    dag = Dag(fetcher)
    reader = Reader(dag, fetcher)
    return Operations(Tree(store, dag, reader), reader)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    random_file(d / "big", 3 * 262144 + 123, seed=1)
    random_file(d / "sub" / "small", 1000, seed=2)
    (d / "empty").write_bytes(b"")
    return d


def run(fn):  # type: ignore[no-untyped-def]
    return trio.run(fn)


def test_lookup_read_readdir(home: Path, tree: Path) -> None:
    with Store.open(home) as store:
        root = cidmod.to_str(Importer(store).add(tree).cid)
        ops = make_ops(store)

        async def go() -> None:
            d = await ops.lookup(ROOT, root.encode(), CTX)
            assert d.st_mode & 0o170000 == 0o040000
            big = await ops.lookup(d.st_ino, b"big", CTX)
            assert big.st_size == 3 * 262144 + 123
            fi = await ops.open(big.st_ino, os.O_RDONLY, CTX)
            assert fi.keep_cache
            want = (tree / "big").read_bytes()
            for off, size in [(0, 4096), (262140, 10), (100, 1 << 20), (big.st_size - 5, 4096)]:
                assert bytes(await ops.read(fi.fh, off, size)) == want[off : off + size]
            fh = await ops.opendir(d.st_ino, CTX)
            names: list[bytes] = []

            orig = pyfuse3.readdir_reply
            pyfuse3.readdir_reply = lambda tok, name, attrs, nxt: names.append(name) or True
            try:
                await ops.readdir(fh, 0, None)  # type: ignore[arg-type]
            finally:
                pyfuse3.readdir_reply = orig
            assert names == [b"big", b"empty", b"sub"]

        run(go)


def test_errors(home: Path, tree: Path) -> None:
    with Store.open(home) as store:
        root = cidmod.to_str(Importer(store).add(tree / "big").cid)
        ops = make_ops(store)

        async def go() -> None:
            for name, code in [(b"not-a-cid", errno.ENOENT), (b"z" * 64, errno.ENOENT),
                               (cidmod.to_str(cidmod.make(0x55, b"nowhere")).encode(),
                                errno.ENOENT)]:
                with pytest.raises(pyfuse3.FUSEError) as e:
                    await ops.lookup(ROOT, name, CTX)
                assert e.value.errno == code
            f = await ops.lookup(ROOT, root.encode(), CTX)
            with pytest.raises(pyfuse3.FUSEError) as e:
                await ops.open(f.st_ino, os.O_WRONLY, CTX)
            assert e.value.errno == errno.EROFS
            with pytest.raises(pyfuse3.FUSEError) as e:
                await ops.getxattr(f.st_ino, b"user.cas.nope", CTX)
            assert e.value.errno == pyfuse3.ENOATTR
            assert await ops.getxattr(f.st_ino, b"user.cas.cid", CTX) == root.encode()
            with pytest.raises(pyfuse3.FUSEError) as e:
                await ops.unlink(ROOT, root.encode(), CTX)
            assert e.value.errno == errno.EROFS

        run(go)


def test_forget_drops_inodes(home: Path, tree: Path) -> None:
    with Store.open(home) as store:
        root = cidmod.to_str(Importer(store).add(tree / "big").cid).encode()
        ops = make_ops(store)

        async def go() -> None:
            a = await ops.lookup(ROOT, root, CTX)
            b = await ops.lookup(ROOT, root, CTX)
            assert a.st_ino == b.st_ino
            ops.forget([(a.st_ino, 1)])
            assert ops.inodes.get(a.st_ino) is not None
            ops.forget([(a.st_ino, 1)])
            assert ops.inodes.get(a.st_ino) is None

        run(go)
