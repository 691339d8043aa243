"""The control socket: how `casfs peers`, `casfs id` and friends talk to a running mount.

One JSON object per line each way, on a Unix socket in the state directory (mode 0600: only
the mount's owner may steer it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from casfs.errors import QuietError

log = logging.getLogger(__name__)
MAX_LINE = 1 << 20
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def serve(path: Path, handler: Handler,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    path.unlink(missing_ok=True)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    try:
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                nursery.start_soon(_session, stream, handler)
    finally:
        path.unlink(missing_ok=True)


async def _session(stream: trio.SocketStream, handler: Handler) -> None:
    async with stream:
        buf = b""
        try:
            with trio.fail_after(30):
                while b"\n" not in buf and len(buf) < MAX_LINE:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buf += chunk
                request = json.loads(buf.split(b"\n", 1)[0])
                if not isinstance(request, dict):
                    raise ValueError("request is not an object")
                try:
                    reply = await handler(request)
                except Exception as exc:  # noqa: BLE001 — reported to the caller, not fatal
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                await stream.send_all(json.dumps(reply).encode() + b"\n")
        except (ValueError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            log.debug("control session dropped: %s", exc)


def call(home: Path, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Ask the mount running on home; QuietError if none is."""
    path = home / "control.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise QuietError(f"no casfs mount is running for {home}") from None
    with sock:
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data or b"{}")
    if "error" in reply:
        raise QuietError(str(reply["error"]))
    return reply
