"""Small misbehaving HTTP servers on 127.0.0.1 for tests: they lie, truncate, stall or count.

Each is a real server in a thread of the test process, speaking HTTP to casfs like a real
gateway or RPC API would. `Proxy` forwards to a real upstream (the js-ipfs daemon) and then
spoils the answer as its mode says.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class _Addresses:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}/http"


class _Server(_Addresses):
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.requests = 0

    @property
    def port(self) -> int:  # type: ignore[override]
        return self.httpd.server_address[1]

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _forward(self) -> None:
        owner: Proxy = self.server.owner  # type: ignore[attr-defined]
        owner.requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        req = urllib.request.Request(owner.upstream + self.path, data=body,
                                     method=self.command,
                                     # no accept-encoding: the body is passed on as is,
                                     # without the upstream's Content-Encoding header
                                     headers={k: v for k, v in self.headers.items()
                                              if k.lower() not in ("host", "content-length",
                                                                   "accept-encoding")})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, data = resp.status, resp.read()
                ctype = resp.headers.get("Content-Type", "application/octet-stream")
        except urllib.error.HTTPError as exc:
            status, data, ctype = exc.code, exc.read(), "text/plain"
        if status == 200 and len(data) > 0:
            data = owner.spoil(data)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_HEAD = _forward


class Proxy(_Server):
    """Forwards to upstream; mode "flip" flips a byte in every answer, "truncate" cuts it."""

    def __init__(self, upstream: str, mode: str) -> None:
        super().__init__(_ProxyHandler)
        self.upstream = upstream.rstrip("/")
        self.mode = mode

    def spoil(self, data: bytes) -> bytes:
        if self.mode == "flip":
            i = len(data) // 2
            return data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1 :]
        if self.mode == "truncate":
            return data[: max(0, len(data) - 1000)] if len(data) > 1 else b""
        return data


class Silent(_Addresses):
    """Accepts connections and reads requests, never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:  # type: ignore[override]
        return self.sock.getsockname()[1]

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        deadline = time.monotonic() + 600  # bounded: no test runs this long
        while not self._stop and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)

    def __enter__(self) -> Silent:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        for c in self.conns:
            c.close()
        self.sock.close()
