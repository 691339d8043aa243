"""Serving /cas/1.0.0 streams: capability exchange, have-queries, blocks, pin requests.

Every handler is guarded: an exception escaping a stream handler makes py-libp2p's host.run()
raise and would take the mount down with it (FACTS.md). A bad peer only loses its stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import trio

from casfs import cid as cidmod
from casfs.errors import BlockCorrupt, BlockNotFound
from casfs.limit import TokenBucket
from casfs.p2p import wire
from casfs.p2p.config import IDLE_TIMEOUT, MAX_HAVE, MAX_MANY, REQUEST_TIMEOUT
from casfs.p2p.wire import Message, Msg
from casfs.store import Store

log = logging.getLogger(__name__)

OnHello = Callable[[str, Message], None]
MakeHello = Callable[[], Message]
OnPin = Callable[[str, bytes], tuple[bool, str]]
OnKey = Callable[[str, bytes], tuple[bool, str]]


class Server:
    def __init__(self, store: Store, on_hello: OnHello, make_hello: MakeHello,
                 on_pin: OnPin | None = None,
                 may_have_private: Callable[[str], bool] = lambda peer: False,
                 bucket: TokenBucket | None = None, on_key: OnKey | None = None) -> None:
        self.on_key = on_key
        self.store = store
        self.on_hello = on_hello
        self.make_hello = make_hello
        self.on_pin = on_pin
        self.may_have_private = may_have_private
        self.bucket = bucket or TokenBucket(0)
        self.refused = 0
        self.served_blocks = 0
        self.served_bytes = 0
        self.bad_streams = 0

    async def handle(self, stream: Any) -> None:
        peer = str(stream.muxed_conn.peer_id)
        reader = wire.Reader(stream)
        try:
            while True:
                with trio.fail_after(IDLE_TIMEOUT):
                    msg = await reader.read()
                for reply in self.answers(peer, msg):
                    await self.bucket.consume(len(reply.body))  # p2p_bandwidth_limit
                    with trio.fail_after(REQUEST_TIMEOUT):
                        await stream.write(wire.encode(reply))
        except EOFError:
            await _quietly(stream.close)
        except Exception as exc:  # noqa: BLE001 — see the module docstring
            self.bad_streams += 1
            log.debug("stream from %s reset: %s: %s", peer, type(exc).__name__, exc)
            await _quietly(stream.reset)

    def answers(self, peer: str, msg: Message) -> Iterator[Message]:
        """The replies to msg, in order: one per block for GET_MANY (read as they are sent,
        so a batch never sits in memory whole), else exactly one."""
        if msg.type != Msg.GET_MANY:
            yield self.answer(peer, msg)
            return
        cids = msg.header.get("cids")
        if not isinstance(cids, list) or not 0 < len(cids) <= MAX_MANY:
            raise wire.ProtocolError("bad GET_MANY")
        for text in cids:
            yield self._get(peer, text)

    def answer(self, peer: str, msg: Message) -> Message:
        if msg.type == Msg.HELLO:
            self.on_hello(peer, msg)
            return self.make_hello()
        if msg.type == Msg.HAVE:
            cids = msg.header.get("cids")
            if not isinstance(cids, list) or len(cids) > MAX_HAVE:
                raise wire.ProtocolError("bad have-query")
            return Message(Msg.HAVE_REPLY, {"have": [self._has(c) for c in cids]})
        if msg.type == Msg.GET:
            return self._get(peer, msg.header.get("cid"))
        if msg.type == Msg.PIN:
            cid = cidmod.parse(msg.header.get("cid")) if isinstance(msg.header.get("cid"),
                                                                     str) else None
            if cid is None:
                raise wire.ProtocolError("PIN without a valid cid")
            ok, reason = self.on_pin(peer, cid) if self.on_pin else (False, "not offered")
            return Message(Msg.PIN_REPLY, {"ok": ok, "reason": reason})
        if msg.type == Msg.KEY:
            ok, reason = self.on_key(peer, msg.body) if self.on_key else (False, "not offered")
            return Message(Msg.KEY_REPLY, {"ok": ok, "reason": reason})
        raise wire.ProtocolError(f"unexpected {msg.type.name}")

    def _has(self, text: object) -> bool:
        cid = cidmod.parse(text) if isinstance(text, str) else None
        return cid is not None and self.store.has(cid)  # (a GET of a private one is refused)

    def _get(self, peer: str, text: object) -> Message:
        cid = cidmod.parse(text) if isinstance(text, str) else None
        if cid is None:
            raise wire.ProtocolError("GET without a valid cid")
        if self.store.index.block_is_private(cidmod.multihash_of(cid)) and \
                not self.may_have_private(peer):
            self.refused += 1
            log.info("refused private block %s to %s", text, peer)
            return Message(Msg.REFUSED, {"cid": text, "reason": "private"})
        try:
            data = self.store.get(cid)
        except BlockNotFound:
            return Message(Msg.NOT_FOUND, {"cid": text})
        except BlockCorrupt:
            self.store.drop(cid)
            return Message(Msg.NOT_FOUND, {"cid": text})
        self.served_blocks += 1
        self.served_bytes += len(data)
        return Message(Msg.BLOCK, {"cid": text}, data)


async def _quietly(action: Callable[[], Any]) -> None:
    try:
        with trio.move_on_after(1):
            await action()
    except Exception:  # noqa: BLE001 — the stream is being thrown away anyway
        pass
