"""The SQLite index beside the block files: what content we hold, its sha256, roots.

WAL mode so a mount and `casfs add` can use the store at once; synchronous=FULL because a
commit is how casfs tells a user "stored", and that must survive a power cut.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS content (
    cid BLOB PRIMARY KEY,
    kind INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 BLOB,
    is_root INTEGER NOT NULL DEFAULT 0,
    added REAL NOT NULL,
    private INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS content_sha256 ON content(sha256);
CREATE INDEX IF NOT EXISTS content_roots ON content(is_root, added);
CREATE TABLE IF NOT EXISTS blocks (
    mh BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    source TEXT NOT NULL,
    added REAL NOT NULL,
    atime REAL,
    private INTEGER NOT NULL DEFAULT 0  -- served only to trusted peers
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pins (
    cid BLOB PRIMARY KEY,
    added REAL NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT 'user'
) WITHOUT ROWID;
-- Blocks a pin protects from eviction, written as the pin walks its DAG.
CREATE TABLE IF NOT EXISTS pin_blocks (
    mh BLOB NOT NULL,
    root BLOB NOT NULL,
    PRIMARY KEY (mh, root)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pin_blocks_root ON pin_blocks(root);
-- Trust in peers (by peer id) and sources (by name), kept across mounts.
CREATE TABLE IF NOT EXISTS trust (
    id TEXT PRIMARY KEY,
    score REAL NOT NULL,
    updated REAL NOT NULL
) WITHOUT ROWID;
"""


def evictable(path: Path) -> list[tuple[bytes, int, float, str]]:
    """(mh, size, last access, source) of every block no pin protects.

    Opens its own connection, so it may run in a worker thread beside the mount's."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute(
            "SELECT mh, size, coalesce(atime, added), source FROM blocks "
            "WHERE mh NOT IN (SELECT mh FROM pin_blocks)").fetchall()
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class ContentRow:
    cid: bytes
    kind: int
    size: int
    sha256: bytes | None
    is_root: bool
    added: float
    private: bool = False


class Index:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def record_blocks(self, rows: Iterable[tuple[bytes, int, str, bool]]) -> None:
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT OR IGNORE INTO blocks (mh, size, source, added, private) "
                "VALUES (?, ?, ?, ?, ?)",
                [(mh, size, source, now, int(private)) for mh, size, source, private in rows])

    def sources(self, mhs: list[bytes]) -> dict[str, int]:
        """How many of these blocks came from each source."""
        out: dict[str, int] = {}
        for i in range(0, len(mhs), 500):
            part = mhs[i : i + 500]
            marks = ",".join("?" * len(part))
            for source, n in self.conn.execute(
                    f"SELECT source, count(*) FROM blocks WHERE mh IN ({marks}) GROUP BY source",
                    part):
                out[source] = out.get(source, 0) + n
        return out

    def forget_blocks(self, mhs: list[bytes]) -> None:
        with self.conn:  # one transaction (one fsync) however many
            self.conn.execute("BEGIN")
            self.conn.executemany("DELETE FROM blocks WHERE mh = ?", [(mh,) for mh in mhs])

    def record_content(self, rows: Iterable[tuple[bytes, int, int, bytes | None, bool]]) -> None:
        """Rows of (cid, kind, size, sha256, is_root); a root stays a root once it is one."""
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO content (cid, kind, size, sha256, is_root, added) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(cid) DO UPDATE SET "
                "sha256 = coalesce(excluded.sha256, sha256), "
                "is_root = max(is_root, excluded.is_root)",
                [(c, k, s, h, int(r), now) for c, k, s, h, r in rows])

    def content(self, cid: bytes) -> ContentRow | None:
        row = self.conn.execute(
            "SELECT cid, kind, size, sha256, is_root, added, private FROM content WHERE cid = ?",
            (cid,)).fetchone()
        return ContentRow(*row) if row else None

    def by_sha256(self, digest: bytes) -> bytes | None:
        row = self.conn.execute("SELECT cid FROM content WHERE sha256 = ? LIMIT 1",
                                (digest,)).fetchone()
        return row[0] if row else None

    def set_sha256(self, cid: bytes, digest: bytes) -> None:
        self.conn.execute("UPDATE content SET sha256 = ? WHERE cid = ?", (digest, cid))

    def roots(self) -> list[ContentRow]:
        rows = self.conn.execute(
            "SELECT cid, kind, size, sha256, is_root, added FROM content "
            "WHERE is_root = 1 ORDER BY added, cid").fetchall()
        return [ContentRow(*r) for r in rows]

    # -- trust ------------------------------------------------------------------------------

    def trust(self, ident: str) -> float | None:
        row = self.conn.execute("SELECT score FROM trust WHERE id = ?", (ident,)).fetchone()
        return row[0] if row else None

    def save_trust(self, scores: dict[str, float]) -> None:
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO trust (id, score, updated) VALUES (?, ?, ?) ON CONFLICT(id) "
                "DO UPDATE SET score = excluded.score, updated = excluded.updated",
                [(k, v, now) for k, v in scores.items()])

    # -- privacy ------------------------------------------------------------------------------

    def is_private(self, cid: bytes) -> bool:
        row = self.conn.execute("SELECT private FROM content WHERE cid = ?", (cid,)).fetchone()
        return bool(row and row[0])

    def set_private(self, cid: bytes, kind: int, size: int, private: bool) -> None:
        self.conn.execute(
            "INSERT INTO content (cid, kind, size, added, private) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(cid) DO UPDATE SET private = excluded.private",
            (cid, kind, size, time.time(), int(private)))

    def mark_blocks_private(self, mhs: Iterable[bytes], private: bool) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany("UPDATE blocks SET private = ? WHERE mh = ?",
                                  [(int(private), mh) for mh in mhs])

    def block_is_private(self, mh: bytes) -> bool:
        row = self.conn.execute("SELECT private FROM blocks WHERE mh = ?", (mh,)).fetchone()
        return bool(row and row[0])

    # -- pins -------------------------------------------------------------------------------

    def add_pin(self, cid: bytes, reason: str = "user") -> bool:
        """False if cid was pinned already."""
        cur = self.conn.execute("INSERT OR IGNORE INTO pins (cid, added, reason) VALUES (?, ?, ?)",
                                (cid, time.time(), reason))
        return cur.rowcount == 1

    def remove_pin(self, cid: bytes) -> bool:
        with self.conn:
            self.conn.execute("BEGIN")
            cur = self.conn.execute("DELETE FROM pins WHERE cid = ?", (cid,))
            self.conn.execute("DELETE FROM pin_blocks WHERE root = ?", (cid,))
        return cur.rowcount == 1

    def pins(self) -> list[tuple[bytes, bool, str]]:
        return [(c, bool(done), reason) for c, done, reason in self.conn.execute(
            "SELECT cid, complete, reason FROM pins ORDER BY added")]

    def pin_state(self, cid: bytes) -> bool | None:
        """None: not pinned; False: pinned, still fetching; True: pinned and complete."""
        row = self.conn.execute("SELECT complete FROM pins WHERE cid = ?", (cid,)).fetchone()
        return None if row is None else bool(row[0])

    def set_pin_complete(self, cid: bytes) -> None:
        self.conn.execute("UPDATE pins SET complete = 1 WHERE cid = ?", (cid,))

    def protect(self, root: bytes, mhs: Iterable[bytes]) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany("INSERT OR IGNORE INTO pin_blocks (mh, root) VALUES (?, ?)",
                                  [(mh, root) for mh in mhs])

    def pinned_bytes(self) -> int:
        (n,) = self.conn.execute(
            "SELECT coalesce(sum(size), 0) FROM blocks WHERE mh IN "
            "(SELECT DISTINCT mh FROM pin_blocks)").fetchone()
        return n

    # -- eviction -----------------------------------------------------------------------------

    def touch(self, rows: Iterable[tuple[float, bytes]]) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany("UPDATE blocks SET atime = ? WHERE mh = ?", list(rows))

    def total_bytes(self) -> int:
        (n,) = self.conn.execute("SELECT coalesce(sum(size), 0) FROM blocks").fetchone()
        return n


    def counts(self) -> dict[str, int]:
        blocks, nbytes = self.conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM blocks").fetchone()
        (roots,) = self.conn.execute("SELECT count(*) FROM content WHERE is_root = 1").fetchone()
        return {"blocks": blocks, "block_bytes": nbytes, "roots": roots}
