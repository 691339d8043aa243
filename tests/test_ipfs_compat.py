"""casfs computes the same CIDs as a real IPFS node (js-ipfs), and finds content by sha256.

Every expected CID here comes from the js-ipfs daemon (fixture ``jsipfs``, see jsipfs.py), added
with CIDv1, raw leaves and the default 256 KiB chunker; casfs computes its CIDs through its CLI,
``python -m casfs add --quiet PATH...``, in a CASFS_HOME of its own.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jsipfs import JsIpfs
from multiformats import CID

log = logging.getLogger(__name__)

pytestmark = pytest.mark.ipfs

CHUNK = 262144  # the default chunk size of js-ipfs and Kubo
LINKS = 174  # links per node of the balanced layout

FILE_SIZES = [
    0,
    1,
    1000,
    CHUNK - 1,
    CHUNK,
    CHUNK + 1,
    3 * CHUNK + 7,
    LINKS * CHUNK,  # the largest file whose root links straight to its leaves
    LINKS * CHUNK + 1,  # one leaf more: a second level
    200 * CHUNK + 5,  # 201 leaves: a full first child and a partial second one
]

# (relative path, size) of the files in the directory tree; None marks an empty directory.
TREE: list[tuple[str, int | None]] = [
    ("a.txt", 1000),
    ("empty.txt", 0),
    ("with space.bin", CHUNK + 1),
    ("héllo wörld ✓.txt", 37),
    ("sub/b.bin", 3 * CHUNK + 7),
    ("sub/one", 1),
    ("sub/deeper/c.bin", CHUNK),
    ("sub/deeper/empty dir", None),
    ("zempty", None),
    ("Ωmega/x", 5),
]

CASFS_TIMEOUT = 600.0


def random_bytes(size: int, label: str) -> bytes:
    """Pseudo-random bytes, the same on every run (so a failure can be reproduced)."""
    return random.Random(f"casfs-compat-{label}-{size}").randbytes(size)


def run_casfs(home: Path, *args: str) -> bytes:
    """Run ``python -m casfs ARGS`` with CASFS_HOME=home; return stdout, fail on an error."""
    env = dict(os.environ, CASFS_HOME=str(home))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "casfs", *args],
            capture_output=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=CASFS_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"casfs {' '.join(args)} took over {CASFS_TIMEOUT:.0f} s", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"casfs {' '.join(args)} exited with {proc.returncode}:\n"
            f"{proc.stderr.decode(errors='replace')[-4000:]}",
            pytrace=False,
        )
    return proc.stdout


def casfs_add(home: Path, paths: list[Path]) -> dict[Path, str]:
    """``casfs add --quiet`` the paths in one run; return each path's CID."""
    out = run_casfs(home, "add", "--quiet", *map(str, paths)).decode()
    cids = [line.strip() for line in out.splitlines() if line.strip()]
    assert len(cids) == len(paths), (
        f"casfs add printed {len(cids)} CIDs for {len(paths)} paths:\n{out}"
    )
    return dict(zip(paths, cids, strict=True))


@dataclass
class Corpus:
    """The files and the tree written for these tests."""

    root: Path
    files: dict[int, Path] = field(default_factory=dict)  # size -> file
    tree: Path = Path()


@dataclass
class Added:
    """What ``casfs add`` made of the corpus."""

    home: Path  # CASFS_HOME
    cids: dict[Path, str]


def write_tree(root: Path) -> None:
    for rel, size in TREE:
        path = root / rel
        if size is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(random_bytes(size, rel))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    base = tmp_path_factory.mktemp("compat")
    corpus = Corpus(root=base / "data")
    corpus.root.mkdir()
    for size in FILE_SIZES:
        path = corpus.root / f"file-{size}.bin"
        path.write_bytes(random_bytes(size, "file"))
        corpus.files[size] = path
    corpus.tree = corpus.root / "tree"
    write_tree(corpus.tree)
    return corpus


@pytest.fixture(scope="module")
def added(tmp_path_factory: pytest.TempPathFactory, corpus: Corpus) -> Added:
    """``casfs add`` every file and the tree in one run, into a fresh CASFS_HOME."""
    home = tmp_path_factory.mktemp("casfs-home")
    return Added(home=home, cids=casfs_add(home, [*corpus.files.values(), corpus.tree]))


# -- diagnostics ---------------------------------------------------------------------------


def describe_cid(cid: str) -> str:
    try:
        parsed = CID.decode(cid)
    except Exception as exc:  # noqa: BLE001 - whatever casfs printed, show it
        return f"{cid!r}: not a CID ({exc})"
    return (
        f"{cid}: CIDv{parsed.version} {parsed.codec.name} {parsed.hashfun.name} "
        f"{parsed.raw_digest.hex()}"
    )


def describe_js_root(node: JsIpfs, cid: str) -> str:
    """What js-ipfs stored at ``cid`` (object get, the first level, and the raw block).

    ``dag/get`` answers 500 for dag-pb nodes with links in js-ipfs 0.18.1; ``object/get`` and
    ``block/get`` give the same information.
    """
    client = node.client()
    lines = [f"js-ipfs root {describe_cid(cid)}"]
    try:
        raw = client.block.get(cid, opts={"timeout": "5s"}, timeout=10)
        lines.append(f"  block get ({len(raw)} bytes): {raw[:400].hex()}")
        if CID.decode(cid).codec.name == "dag-pb":
            obj = client.object.get(cid, opts={"data-encoding": "base64", "timeout": "5s"})
            data = base64.b64decode(obj["Data"])
            lines.append(f"  unixfs Data: {data.hex()}")
            links = obj["Links"]
            lines.append(f"  {len(links)} links:")
            for link in links[:8]:
                lines.append(f"    {link['Name']!r} {link['Size']} {link['Hash']}")
            if len(links) > 8:
                lines.append(
                    f"    ... last: {links[-1]['Name']!r} {links[-1]['Size']} {links[-1]['Hash']}"
                )
    except Exception as exc:  # noqa: BLE001 - diagnostics must not hide the real failure
        lines.append(f"  (could not read it back: {exc})")
    return "\n".join(lines)


def assert_same_cid(node: JsIpfs, what: str, expected: str, got: str) -> None:
    if got == expected:
        return
    pytest.fail(
        f"{what}: casfs and js-ipfs disagree\n"
        f"  casfs   {describe_cid(got)}\n"
        f"  js-ipfs {describe_cid(expected)}\n"
        f"{describe_js_root(node, expected)}",
        pytrace=False,
    )


def js_links(node: JsIpfs, cid: str) -> list[dict[str, object]]:
    obj = node.client().object.get(cid, opts={"timeout": "5s"})
    return [dict(link) for link in obj["Links"]]


def js_listing(node: JsIpfs, cid: str, prefix: str = "") -> dict[str, int | None]:
    """{relative path: size, or None for a directory} of the tree js-ipfs has at ``cid``."""
    out: dict[str, int | None] = {}
    for link in node.client().ls(cid, opts={"timeout": "5s"})["Objects"][0]["Links"]:
        rel = f"{prefix}{link['Name']}"
        if link["Type"] == 1:  # directory
            out[rel] = None
            out.update(js_listing(node, to_v1(link["Hash"]), f"{rel}/"))
        else:
            out[rel] = int(link["Size"])
    return out


def to_v1(cid: str) -> str:
    return str(CID.decode(cid).set(version=1, base="base32"))


def fs_listing(root: Path) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        out[rel] = None if path.is_dir() else path.stat().st_size
    return out


# -- the reference behaves as these tests assume ----------------------------------------------


def test_js_ipfs_reference_layout(jsipfs: JsIpfs, corpus: Corpus) -> None:
    """js-ipfs gives raw leaves, 256 KiB chunks and 174-link balanced trees; add_bytes agrees."""
    small = jsipfs.add_path(corpus.files[1000])
    assert CID.decode(small).codec.name == "raw"
    assert small == jsipfs.add_bytes(corpus.files[1000].read_bytes())
    two = jsipfs.add_path(corpus.files[CHUNK + 1])
    assert CID.decode(two).codec.name == "dag-pb"
    assert [link["Size"] for link in js_links(jsipfs, two)] == [CHUNK, 1]
    assert len(js_links(jsipfs, jsipfs.add_path(corpus.files[LINKS * CHUNK]))) == LINKS
    deep = js_links(jsipfs, jsipfs.add_path(corpus.files[200 * CHUNK + 5]))
    assert len(deep) == 2
    assert [len(js_links(jsipfs, str(link["Hash"]))) for link in deep] == [LINKS, 200 + 1 - LINKS]


def test_js_ipfs_sees_the_tree_as_written(jsipfs: JsIpfs, corpus: Corpus) -> None:
    """The HTTP client uploads every name (spaces, non-ASCII, empty directories) unchanged."""
    cid = jsipfs.add_path(corpus.tree)
    assert js_listing(jsipfs, cid) == fs_listing(corpus.tree)


# -- casfs agrees with it ---------------------------------------------------------------------


@pytest.mark.parametrize("size", FILE_SIZES, ids=[f"size={size}" for size in FILE_SIZES])
def test_file_cid_matches_js_ipfs(jsipfs: JsIpfs, corpus: Corpus, added: Added, size: int) -> None:
    path = corpus.files[size]
    assert_same_cid(jsipfs, f"file of {size} bytes", jsipfs.add_path(path), added.cids[path])


def test_directory_cid_matches_js_ipfs(jsipfs: JsIpfs, corpus: Corpus, added: Added) -> None:
    expected = jsipfs.add_path(corpus.tree)
    got = added.cids[corpus.tree]
    if got == expected:
        return
    # Name the entries that differ before failing on the root.
    sub_paths = sorted(corpus.tree.rglob("*"))
    sub_cids = casfs_add(added.home, sub_paths)
    differing = []
    for sub in sub_paths:
        js = jsipfs.add_path(sub)
        if js != sub_cids[sub]:
            differing.append(f"  {sub.relative_to(corpus.tree)}: casfs {sub_cids[sub]} js {js}")
    pytest.fail(
        f"directory tree: casfs {got} != js-ipfs {expected}\n"
        "entries that differ when added alone:\n"
        + ("\n".join(differing) or "  (none)")
        + f"\n{describe_js_root(jsipfs, expected)}",
        pytrace=False,
    )


def test_same_content_same_cid_in_a_new_home(tmp_path: Path, corpus: Corpus, added: Added) -> None:
    """CIDs depend on content only, not on the store they were added to."""
    path = corpus.files[3 * CHUNK + 7]
    home = tmp_path / "home"
    home.mkdir()
    assert casfs_add(home, [path])[path] == added.cids[path]


# -- sha256 recording -------------------------------------------------------------------------

CAT_SIZES = [0, 1000, CHUNK + 1, LINKS * CHUNK + 1]


def assert_same_bytes(what: str, got: bytes, want: bytes) -> None:
    """Compare without printing megabytes: lengths, sha256 and the first differing offset."""
    if got == want:
        return
    first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    pytest.fail(
        f"{what}: got {len(got)} bytes (sha256 {hashlib.sha256(got).hexdigest()}), "
        f"want {len(want)} bytes (sha256 {hashlib.sha256(want).hexdigest()}); "
        f"first difference at offset {first if first is not None else min(len(got), len(want))}",
        pytrace=False,
    )


@pytest.mark.parametrize("size", CAT_SIZES, ids=[f"size={size}" for size in CAT_SIZES])
def test_cat_by_cid_and_by_sha256(corpus: Corpus, added: Added, size: int) -> None:
    path = corpus.files[size]
    data = path.read_bytes()
    cid = added.cids[path]
    assert_same_bytes(f"casfs cat {cid}", run_casfs(added.home, "cat", cid), data)
    digest = hashlib.sha256(data).hexdigest()
    assert_same_bytes(f"casfs cat {digest}", run_casfs(added.home, "cat", digest), data)


def test_cat_by_sha256_of_a_file_added_inside_a_directory(corpus: Corpus, added: Added) -> None:
    data = (corpus.tree / "sub" / "b.bin").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert_same_bytes(f"casfs cat {digest}", run_casfs(added.home, "cat", digest), data)
