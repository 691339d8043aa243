"""New-content announcements cross between casfs gossipsub and real IPFS pubsub (js-ipfs)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import Casfs, Mount, random_file, wait_for
from jsipfs import JsIpfs

pytestmark = [pytest.mark.ipfs, pytest.mark.mount]
TOPIC = "casfs/new-content/1"
ARG = "u" + base64.urlsafe_b64encode(TOPIC.encode()).decode().rstrip("=")



def test_announcements_cross_to_and_from_ipfs(jsipfs: JsIpfs, tmp_path: Path,
                                              mount_factory: Callable[..., Mount]) -> None:
    other = JsIpfs(tmp_path / "ipfs2")
    other.start()
    try:
        peer = json.loads(httpx.post(f"{jsipfs.api_url}/api/v0/id").text)["ID"]
        httpx.post(f"{other.api_url}/api/v0/swarm/connect",
                   params={"arg": f"{jsipfs.swarm_multiaddr}/p2p/{peer}"}, timeout=10)
        heard: list[dict[str, object]] = []
        stop = threading.Event()

        def listen() -> None:  # a subscriber on the second IPFS node
            try:
                with httpx.Client(timeout=httpx.Timeout(5, read=30)) as c, \
                        c.stream("POST", f"{other.api_url}/api/v0/pubsub/sub",
                                 params={"arg": ARG}) as r:
                    for line in r.iter_lines():
                        if stop.is_set():
                            return
                        try:
                            data = json.loads(line)["data"]
                            heard.append(json.loads(base64.urlsafe_b64decode(
                                data[1:] + "=" * (-len(data[1:]) % 4))))
                        except (ValueError, KeyError):
                            continue
            except httpx.HTTPError:
                return  # the daemon stopped at the end of the test

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        casfs = Casfs(tmp_path / "home")
        casfs.home.mkdir()
        m = mount_factory(casfs, "--ipfs-api", jsipfs.api_multiaddr)

        def subscribed() -> bool:
            r = httpx.post(f"{jsipfs.api_url}/api/v0/pubsub/peers", params={"arg": ARG})
            return bool(r.json().get("Strings"))

        assert wait_for(subscribed)
        time.sleep(2)  # gossipsub heartbeats put the peers in each other's mesh
        # casfs -> IPFS: what the node adds is announced on IPFS pubsub too.
        (cid,) = casfs.add(random_file(tmp_path / "f", 1000, seed=41))
        assert wait_for(lambda: any(n.get("cid") == cid for n in heard)), heard
        # IPFS -> casfs: an announcement published on the other IPFS node reaches the mount.
        note = {"type": "new-content", "cid": "bafkreifake", "size": 1, "sender": "ipfs-peer"}

        def relayed() -> bool:
            httpx.post(f"{other.api_url}/api/v0/pubsub/pub", params={"arg": ARG},
                       files={"file": ("d", json.dumps(note).encode())})
            return "announced bafkreifake" in m.log()

        assert wait_for(relayed)
        stop.set()
    finally:
        other.stop()
