"""Bridging new-content announcements between gossipsub and an IPFS node's pubsub.

The Kubo RPC API (and js-ipfs's) wants the topic multibase-encoded ("u" + url-safe base64,
no padding) and the payload as a multipart body; ipfshttpclient 0.7 gets both wrong
(FACTS.md), and its subscription would pin a thread forever, so the two endpoints are called
with httpx, which runs under trio and can be cancelled.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

log = logging.getLogger(__name__)
Deliver = Callable[[dict[str, Any]], Awaitable[None]]


def _topic_arg(topic: str) -> str:
    return "u" + base64.urlsafe_b64encode(topic.encode()).decode().rstrip("=")


def _decode_data(field: str) -> bytes:
    if field.startswith("u"):  # multibase base64url, as newer nodes send it
        body = field[1:]
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return base64.b64decode(field)


class IpfsPubsubBridge:
    def __init__(self, api_url: str, topic: str, retry: float = 2.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.topic = topic
        self.retry = retry
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
        self.sent = 0
        self.received = 0

    async def publish(self, note: dict[str, Any]) -> None:
        try:
            resp = await self.client.post(
                f"{self.api_url}/api/v0/pubsub/pub", params={"arg": _topic_arg(self.topic)},
                files={"file": ("data", json.dumps(note).encode())})
        except httpx.HTTPError as exc:
            log.debug("IPFS pubsub publish failed: %s", exc)
            return
        if resp.status_code == 200:
            self.sent += 1
        else:  # e.g. js-ipfs refuses to publish while no IPFS peer subscribes
            log.debug("IPFS pubsub publish refused: %s", resp.text[:200])

    async def run(self, deliver: Deliver) -> None:
        """Relay what IPFS pubsub carries to deliver(); resubscribe if the node goes away."""
        while True:
            try:
                async with self.client.stream(
                        "POST", f"{self.api_url}/api/v0/pubsub/sub",
                        params={"arg": _topic_arg(self.topic)}) as resp:
                    async for line in resp.aiter_lines():
                        await self._relay(line, deliver)
            except httpx.HTTPError as exc:
                log.debug("IPFS pubsub subscription dropped: %s", exc)
            await trio.sleep(self.retry)

    async def _relay(self, line: str, deliver: Deliver) -> None:
        try:
            msg = json.loads(line)
            note = json.loads(_decode_data(msg["data"]))
        except (ValueError, KeyError, TypeError):
            return  # keep-alive "{}" lines and foreign messages
        if isinstance(note, dict) and note.get("type") == "new-content":
            self.received += 1
            await deliver(note)

    async def aclose(self) -> None:
        await self.client.aclose()
