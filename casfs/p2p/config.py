"""/cas/1.0.0: protocol ids, limits and timeouts, in one place."""

from __future__ import annotations

PROTOCOL_ID = "/cas/1.0.0"
TOPIC = "casfs/new-content/1"

# One frame carries at most one block (bitswap's 2 MiB limit) plus its header; a Bloom filter
# of a large store fits too. A reader stalled on a frame larger than yamux's window makes the
# writer fail silently (FACTS.md), so nothing bigger is ever sent.
MAX_FRAME = (2 << 20) + 4096
MAX_HEADER = 64 << 10
MAX_HAVE = 1024  # CIDs in one have-query
# Blocks asked for in one GET_MANY. Replies stream back on one stream, as a raw transfer does:
# one request and one stream switch per batch instead of per block.
MAX_MANY = 64

CONNECT_TIMEOUT = 5.0  # a silent peer would hold connect() for 120 s
STREAM_TIMEOUT = 5.0  # new_stream to a frozen peer takes 10 s
REQUEST_TIMEOUT = 10.0  # a read from a frozen (SIGSTOPped) peer never returns by itself
IDLE_TIMEOUT = 60.0  # a served stream with no request for this long is closed

REDIAL_FIRST = 1.0  # seconds before redialling a lost bootstrap peer, doubling...
REDIAL_MAX = 30.0  # ...up to this
CAPS_REFRESH = 2.0  # a changed Bloom filter is re-sent to peers at most this often

BLOOM_FP_RATE = 0.01
BLOOM_MIN_ITEMS = 1024
