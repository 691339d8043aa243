"""IPFSNodeSource: blocks from an IPFS node's RPC API (kubo's, which js-ipfs also speaks).

ipfshttpclient is synchronous, so each call runs in a worker thread (one client per thread,
its requests session is not thread-safe) and is abandoned, not waited for, when the read's
deadline cancels it; the daemon-side timeout argument then ends it on the daemon too.
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

import ipfshttpclient
import trio

from casfs import cid as cidmod
from casfs.chain.backoff import Backoff
from casfs.chain.base import ContentSource, P2PContentRequest
from casfs.errors import BlockCorrupt, BlockNotFound, SourceUnavailable

log = logging.getLogger(__name__)
# ipfshttpclient 0.7 passes urllib3 a parameter it deprecated; the warning says nothing to users.
warnings.filterwarnings("ignore", message="The 'strict' parameter", category=FutureWarning)


class IPFSNodeSource(ContentSource):
    kind = "ipfs"

    def __init__(self, api: str, timeout: float = 10.0, workers: int = 8,
                 retry_after: float = 2.0) -> None:
        super().__init__()
        self.api = api
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

    async def retrieve(self, cid: bytes, request: P2PContentRequest) -> bytes:
        timeout = max(0.1, min(self.timeout, request.ttl))
        try:
            data = await trio.to_thread.run_sync(self._block_get, cidmod.to_str(cid), timeout,
                                                 abandon_on_cancel=True, limiter=self._limiter)
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
        if not isinstance(data, bytes) or not cidmod.verify(cid, data):
            raise BlockCorrupt(f"{self.name} returned bytes that do not match the CID")
        return data
