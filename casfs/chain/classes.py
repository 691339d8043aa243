"""Content classes (the seed's P2PIPFSConfig): private/public, recent, small/large, archived.

The class of a block is that of the file being read, which the reader puts in a context
variable; trio copies it into every task the read starts (fetches, read-ahead), so the chain
sees it without threading it through every call.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass

# (file cid, file size) of the read in progress
current_file: contextvars.ContextVar[tuple[bytes, int] | None] = contextvars.ContextVar(
    "casfs_current_file", default=None)

SMALL = 1 << 20
LARGE = 64 << 20
RECENT = 3600.0
ARCHIVED = 30 * 86400.0


@dataclass(frozen=True)
class Preferences:
    prefer_p2p: tuple[str, ...] = ("private", "recent", "small")
    prefer_ipfs: tuple[str, ...] = ("public", "large", "archived")


def classify(private: bool, size: int | None, last_read: float | None,
             added: float | None, now: float | None = None) -> set[str]:
    now = time.time() if now is None else now
    classes = {"private" if private else "public"}
    if size is not None:
        classes.add("small" if size < SMALL else "large" if size >= LARGE else "medium")
    if last_read is not None and now - last_read <= RECENT:
        classes.add("recent")
    if (last_read or added or now) < now - ARCHIVED:
        classes.add("archived")
    return classes


def order_for(classes: set[str], prefs: Preferences, default: tuple[str, ...]
              ) -> tuple[str, ...]:
    """Peers first when the classes lean to prefer_p2p, IPFS links first when they lean to
    prefer_ipfs, the configured order when they balance."""
    lean = len(classes & set(prefs.prefer_p2p)) - len(classes & set(prefs.prefer_ipfs))
    if lean > 0:
        first = ("peer",)
    elif lean < 0:
        first = ("ipfs", "gateway")
    else:
        return default
    return tuple(k for k in first if k in default) + tuple(k for k in default if k not in first)


Classifier = Callable[[bytes, bool], set[str]]
