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
    added REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS content_sha256 ON content(sha256);
CREATE INDEX IF NOT EXISTS content_roots ON content(is_root, added);
CREATE TABLE IF NOT EXISTS blocks (
    mh BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    source TEXT NOT NULL,
    added REAL NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class ContentRow:
    cid: bytes
    kind: int
    size: int
    sha256: bytes | None
    is_root: bool
    added: float


class Index:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def record_blocks(self, rows: Iterable[tuple[bytes, int, str]]) -> None:
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT OR IGNORE INTO blocks (mh, size, source, added) VALUES (?, ?, ?, ?)",
                [(mh, size, source, now) for mh, size, source in rows])

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

    def forget_block(self, mh: bytes) -> None:
        self.conn.execute("DELETE FROM blocks WHERE mh = ?", (mh,))

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
            "SELECT cid, kind, size, sha256, is_root, added FROM content WHERE cid = ?",
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

    def counts(self) -> dict[str, int]:
        blocks, nbytes = self.conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM blocks").fetchone()
        (roots,) = self.conn.execute("SELECT count(*) FROM content WHERE is_root = 1").fetchone()
        return {"blocks": blocks, "block_bytes": nbytes, "roots": roots}
