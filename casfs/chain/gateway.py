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

from casfs import cid as cidmod
from casfs.chain.backoff import Backoff
from casfs.chain.base import ContentSource, P2PContentRequest
from casfs.errors import BlockCorrupt, BlockNotFound, SourceUnavailable
from casfs.unixfs import FileBuilder

log = logging.getLogger(__name__)
RAW_TYPE = "application/vnd.ipld.raw"
MAX_BLOCK = 2 << 20  # no honest block is bigger (bitswap's limit)

PutBlock = Callable[[bytes, bytes, str], object]


class GatewaySource(ContentSource):
    kind = "gateway"

    def __init__(self, url: str, put: PutBlock, timeout: float = 10.0,
                 max_rebuild: int = 256 << 20, retry_after: float = 2.0) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        self.name = f"gateway {self.url}"
        self.put = put
        self.max_rebuild = max_rebuild
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=True)
        self.backoff = Backoff(self.name, self.stats, log, first=retry_after)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def retrieve(self, cid: bytes, request: P2PContentRequest) -> bytes:
        text = cidmod.to_str(cid)
        try:
            data = await self._get(f"/ipfs/{text}?format=raw", {"Accept": RAW_TYPE}, MAX_BLOCK)
            if cidmod.verify(cid, data):
                return data
            if cidmod.codec_of(cid) != cidmod.DAG_PB:
                raise BlockCorrupt(f"{self.name}: block {text} does not match its hash")
            return await self._rebuild(cid, text)
        except httpx.TimeoutException as exc:
            self.backoff.failed("timed out")
            raise SourceUnavailable(f"{self.name}: timed out") from exc
        except httpx.TransportError as exc:
            self.backoff.failed(type(exc).__name__)
            raise SourceUnavailable(f"{self.name}: {type(exc).__name__}") from exc

    async def _get(self, path: str, headers: dict[str, str], limit: int) -> bytes:
        async with self.client.stream("GET", self.url + path, headers=headers) as resp:
            self.backoff.ok()
            if resp.status_code in (404, 410):
                raise BlockNotFound(f"{self.name}: {resp.status_code}")
            if resp.status_code != 200:
                raise SourceUnavailable(f"{self.name}: HTTP {resp.status_code}")
            chunks = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise BlockCorrupt(f"{self.name}: response larger than {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

    async def _rebuild(self, cid: bytes, text: str) -> bytes:
        """Fetch the file and accept it only if it rebuilds into exactly this CID."""
        blocks: dict[bytes, bytes] = {}
        builder = FileBuilder(blocks.__setitem__)
        async with self.client.stream("GET", f"{self.url}/ipfs/{text}") as resp:
            if resp.status_code != 200:
                raise BlockNotFound(f"{self.name}: HTTP {resp.status_code}")
            async for chunk in resp.aiter_bytes(1 << 20):
                builder.write(chunk)
                if builder.size > self.max_rebuild:
                    raise SourceUnavailable(f"{self.name}: file too large to verify by rebuild")
        root, _, _ = builder.finish()
        if root != cid:
            raise BlockCorrupt(f"{self.name}: content of {text} does not rebuild into its CID")
        for block_cid, data in blocks.items():
            if block_cid != cid:
                self.put(block_cid, data, self.name)
        return blocks[cid]
