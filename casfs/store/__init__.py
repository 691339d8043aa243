"""The local store: block files with checksums, and the SQLite index."""

from casfs.store.db import ContentRow, Index
from casfs.store.store import Store

__all__ = ["ContentRow", "Index", "Store"]
