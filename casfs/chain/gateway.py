"""GatewaySource: blocks from an IPFS HTTP gateway, trusting none of its bytes.

First it asks for the trustless raw block (`?format=raw`, `Accept: application/vnd.ipld.raw`)
and checks it against the CID. Gateways that ignore that (js-ipfs does) send the file's
content instead: then the file is rebuilt into a UnixFS DAG the way `ipfs add` builds it and
accepted only if the rebuilt root is the CID asked for, which proves every block of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import trio

from casfs import cid as cidmod
from casfs.chain.backoff import Backoff
from casfs.chain.base import ContentSource, P2PContentRequest
from casfs.errors import BlockCorrupt, BlockNotFound, SourceUnavailable
from casfs.unixfs import FileBuilder

log = logging.getLogger(__name__)
RAW_TYPE = "application/vnd.ipld.raw"
MAX_BLOCK = 2 << 20  # no honest block is bigger (bitswap's limit)

PutBlock = Callable[[bytes, bytes, str], object]
DropBlock = Callable[[bytes], object]
GetBlock = Callable[[bytes], bytes]


class GatewaySource(ContentSource):
    kind = "gateway"
    verifies = True

    def __init__(self, url: str, put: PutBlock, drop: DropBlock, get: GetBlock,
                 timeout: float = 10.0, max_rebuild: int = 64 << 30,
                 retry_after: float = 2.0) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        self.name = f"gateway {self.url}"
        self.put = put
        self.drop = drop
        self.get = get
        self.max_rebuild = max_rebuild
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=True)
        self.backoff = Backoff(self.name, self.stats, log, first=retry_after)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def retrieve(self, cid: bytes, request: P2PContentRequest) -> bytes:
        text = cidmod.to_str(cid)
        try:
            async with self.client.stream("GET", f"{self.url}/ipfs/{text}?format=raw",
                                          headers={"Accept": RAW_TYPE}) as resp:
                self.backoff.ok()
                if resp.status_code in (404, 410):
                    raise BlockNotFound(f"{self.name}: {resp.status_code}")
                if resp.status_code != 200:
                    raise SourceUnavailable(f"{self.name}: HTTP {resp.status_code}")
                raw = resp.headers.get("content-type", "").startswith(RAW_TYPE)
                if raw or cidmod.codec_of(cid) != cidmod.DAG_PB:
                    data = await self._read_block(resp)
                    if not cidmod.verify(cid, data):
                        raise BlockCorrupt(f"{self.name}: block {text} does not match its hash")
                    return data
                # The gateway ignored the raw-block request and sent the file's content.
                return await self._rebuild(cid, text, resp)
        except httpx.TimeoutException as exc:
            self.backoff.failed("timed out")
            raise SourceUnavailable(f"{self.name}: timed out") from exc
        except httpx.TransportError as exc:
            self.backoff.failed(type(exc).__name__)
            raise SourceUnavailable(f"{self.name}: {type(exc).__name__}") from exc

    async def _read_block(self, resp: httpx.Response) -> bytes:
        chunks = []
        size = 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > MAX_BLOCK:
                raise BlockCorrupt(f"{self.name}: a block larger than {MAX_BLOCK} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _rebuild(self, cid: bytes, text: str, resp: httpx.Response) -> bytes:
        """Accept the file only if it rebuilds into exactly this CID.

        Every block the rebuild makes hashes to its own CID, so it may go to the store as it
        is made (in a worker thread: hashing and writing hundreds of MiB would stall reads);
        if the root does not match, they are dropped again."""
        made: list[bytes] = []

        def put(block_cid: bytes, data: bytes) -> None:
            made.append(block_cid)
            self.put(block_cid, data, self.name)

        builder = FileBuilder(put)
        async for chunk in resp.aiter_bytes(1 << 20):
            await trio.to_thread.run_sync(builder.write, chunk)
            if builder.size > self.max_rebuild:
                raise SourceUnavailable(f"{self.name}: file too large to verify by rebuild")
        root, _, _ = await trio.to_thread.run_sync(builder.finish)
        if root != cid:
            for block_cid in made:
                self.drop(block_cid)
            raise BlockCorrupt(f"{self.name}: content of {text} does not rebuild into its CID")
        return self.get(cid)
