"""IPFSNodeSource: blocks from an IPFS node's RPC API (kubo's, which js-ipfs also speaks).

ipfshttpclient is synchronous, so each call runs in a worker thread (one client per thread,
its requests session is not thread-safe) and is abandoned, not waited for, when the read's
deadline cancels it; the daemon-side timeout argument then ends it on the daemon too.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import urllib.parse
import warnings
from typing import Any

import ipfshttpclient
import trio

from casfs import cid as cidmod
from casfs.chain.backoff import Backoff
from casfs.chain.base import ContentSource, P2PContentRequest
from casfs.errors import BlockCorrupt, BlockNotFound, SourceUnavailable
from casfs.limit import TokenBucket

log = logging.getLogger(__name__)
# ipfshttpclient 0.7 passes urllib3 a parameter it deprecated; the warning says nothing to users.
warnings.filterwarnings("ignore", message="The 'strict' parameter", category=FutureWarning)


class IPFSNodeSource(ContentSource):
    kind = "ipfs"
    verifies = True

    def __init__(self, api: str, timeout: float = 10.0, workers: int = 8,
                 retry_after: float = 2.0, bandwidth_limit: int = 0) -> None:
        super().__init__()
        self.bucket = TokenBucket(bandwidth_limit)  # ipfs_bandwidth_limit, bytes/s
        self.api = api
        self._host, self._port = _host_port(api)
        self.name = f"ipfs {api}"
        self.timeout = timeout
        self._limiter = trio.CapacityLimiter(workers)
        self._local = threading.local()
        self.backoff = Backoff(self.name, self.stats, log, first=retry_after)

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = ipfshttpclient.Client(self.api, timeout=self.timeout)
        return client

    def _block_get(self, cid_text: str, timeout: float) -> bytes:
        # The daemon would search its network forever for a block it lacks; its own timeout
        # option makes it answer "not found" instead.
        return self._client().block.get(cid_text, opts={"timeout": f"{timeout:.3f}s"},
                                        timeout=timeout + 1.0)

    supports_ranges = True

    def _cat_leaves(self, root: str, offset: int, leaves: list[tuple[bytes, int]],
                    timeout: float) -> list[bytes | memoryview]:
        """One `cat` of the range, cut at leaf boundaries, each piece checked against its leaf
        CID: the node streams far faster than it answers block/get one block at a time."""
        total = sum(size for _, size in leaves)
        data = self._cat(root, offset, total, timeout)
        out = []
        view = memoryview(data).toreadonly()
        pos = 0
        for cid, size in leaves:
            # Leaves stay views of the one range buffer: a copy each cost as much as the hash.
            # (The memory cache takes a range's leaves together and lets them go together,
            # so a buffer is not kept alive by one leaf for long.)
            piece = view[pos : pos + size]
            if not cidmod.verify(cid, piece):
                raise BlockCorrupt(f"{self.name}: leaf {cidmod.to_str(cid)} of {root} is wrong")
            out.append(piece)
            pos += size
        return out

    def _cat(self, root: str, offset: int, length: int, timeout: float) -> bytearray:
        """POST /api/v0/cat into one preallocated buffer.

        Through http.client, not ipfshttpclient: requests reads bodies 10 KiB at a time in
        Python, which capped a range at ~200 MB/s here; readinto() fills the buffer with the
        GIL released and measured ~2x faster."""
        conn = getattr(self._local, "http", None)
        if conn is None:
            conn = self._local.http = http.client.HTTPConnection(self._host, self._port,
                                                                 timeout=timeout + 1.0)
        # No daemon-side `timeout` here, unlike block/get: on a range it doubled js-ipfs's CPU
        # per byte (an abort timer per block); hanging up at our deadline ends the request.
        query = urllib.parse.urlencode({"arg": root, "offset": offset, "length": length})
        try:
            conn.request("POST", f"/api/v0/cat?{query}")
            resp = conn.getresponse()
            if resp.status != 200:
                body = resp.read(4096)
                raise ipfshttpclient.exceptions.ErrorResponse(
                    body.decode(errors="replace"), None)
            buf = bytearray(length)
            view = memoryview(buf)
            got = 0
            while got < length and (n := resp.readinto(view[got:])):
                got += n
            if got != length or resp.read(1):
                raise BlockCorrupt(f"{self.name}: range came back with the wrong length")
            return buf
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._local.http = None
            if isinstance(exc, TimeoutError | socket.timeout):
                raise ipfshttpclient.exceptions.TimeoutError(exc) from exc
            raise ipfshttpclient.exceptions.ConnectionError(exc) from exc

    async def retrieve_range(self, root: bytes, offset: int, leaves: list[tuple[bytes, int]],
                             request: P2PContentRequest) -> list[bytes | memoryview]:
        timeout = max(0.1, min(self.timeout, request.ttl))
        datas = await self._call(self._cat_leaves, cidmod.to_str(root), offset, leaves, timeout)
        await self.bucket.consume(sum(map(len, datas)))
        return datas

    async def _call(self, fn: Any, *args: Any) -> Any:
        try:
            result = await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True,
                                                   limiter=self._limiter)
        except ipfshttpclient.exceptions.ErrorResponse as exc:
            self.backoff.ok()
            raise BlockNotFound(f"{self.name}: {exc}") from None
        except (ipfshttpclient.exceptions.ConnectionError,
                ipfshttpclient.exceptions.TimeoutError,
                ipfshttpclient.exceptions.ProtocolError) as exc:
            self.backoff.failed(type(exc).__name__)
            raise SourceUnavailable(f"{self.name}: {type(exc).__name__}") from None
        except ipfshttpclient.exceptions.Error as exc:
            raise SourceUnavailable(f"{self.name}: {exc}") from None
        self.backoff.ok()
        return result

    async def retrieve(self, cid: bytes, request: P2PContentRequest) -> bytes:
        timeout = max(0.1, min(self.timeout, request.ttl))
        data = await self._call(self._block_get, cidmod.to_str(cid), timeout)
        await self.bucket.consume(len(data) if isinstance(data, bytes) else 0)
        if not isinstance(data, bytes) or not cidmod.verify(cid, data):
            raise BlockCorrupt(f"{self.name} returned bytes that do not match the CID")
        return data


def _host_port(api: str) -> tuple[str, int]:
    """Host and port of an /ip4/H/tcp/P/http multiaddr (or an http://H:P URL)."""
    parts = api.strip("/").split("/")
    if len(parts) >= 4 and parts[0] in ("ip4", "ip6", "dns", "dns4", "dns6") and \
            parts[2] == "tcp":
        return parts[1], int(parts[3])
    url = urllib.parse.urlsplit(api)
    return url.hostname or "127.0.0.1", url.port or 5001
