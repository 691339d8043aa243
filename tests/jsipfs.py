"""A real js-ipfs daemon on loopback, for tests that compare casfs with IPFS.

js-ipfs (npm package ``ipfs`` 0.66.1, reporting version 0.18.1) is installed by
``scripts/install-jsipfs.sh``. Every address it has is on 127.0.0.1, it has no bootstrap peers,
no MDNS, no delegates and no preload, so it never contacts a public IPFS node.

Use :class:`JsIpfs` as a context manager, or the session fixture :func:`jsipfs` (a conftest
imports it with ``from jsipfs import jsipfs``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import ipfshttpclient
import pytest
from multiformats import CID

log = logging.getLogger(__name__)

# ipfshttpclient 0.7.0 passes `strict` to urllib3 on its first request; urllib3 warns about it.
warnings.filterwarnings("ignore", message="The 'strict' parameter", category=FutureWarning)

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALLER = REPO_ROOT / "scripts" / "install-jsipfs.sh"

INSTALL_TIMEOUT = 900.0  # a cold npm install takes a few minutes
COMMAND_TIMEOUT = 120.0  # jsipfs init
START_TIMEOUT = 60.0  # daemon start until POST /api/v0/id answers
POLL_INTERVAL = 0.25
STOP_TIMEOUT = 10.0  # SIGTERM, then SIGKILL
LOG_TAIL_LINES = 60
CHUNKER = "size-262144"  # the default of js-ipfs and Kubo, stated so a default change shows


class JsIpfsError(RuntimeError):
    """The js-ipfs daemon could not be installed, initialised or started."""


def find_jsipfs_binary() -> Path:
    """Return the ``jsipfs`` binary, installing js-ipfs first if needed.

    ``CASFS_JSIPFS`` may name an existing binary; otherwise the installer runs (a no-op when
    js-ipfs is already installed) and prints the binary's path as its last line.
    """
    override = os.environ.get("CASFS_JSIPFS")
    if override:
        path = Path(override)
        if not os.access(path, os.X_OK):
            raise JsIpfsError(f"CASFS_JSIPFS={override} is not an executable file")
        return path
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", str(INSTALLER)],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise JsIpfsError(f"{INSTALLER} took longer than {INSTALL_TIMEOUT:.0f} s") from exc
    if proc.returncode != 0:
        raise JsIpfsError(
            f"{INSTALLER} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}"
        )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise JsIpfsError(f"{INSTALLER} printed no binary path")
    binary = Path(lines[-1])
    if not os.access(binary, os.X_OK):
        raise JsIpfsError(f"{INSTALLER} printed {binary}, which is not executable")
    log.debug("jsipfs binary %s (installer took %.1f s)", binary, time.monotonic() - started)
    return binary


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports on 127.0.0.1.

    All sockets stay bound until every port is chosen, so the ports differ from each other.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def to_cidv1_base32(cid: str) -> str:
    """Return ``cid`` as a CIDv1 in base32 (js-ipfs answers in whatever base it likes)."""
    return str(CID.decode(cid).set(version=1, base="base32"))


class JsIpfs:
    """A js-ipfs daemon with its repository in ``workdir``, reachable only on 127.0.0.1.

    ``start()`` initialises the repository on first use; ``stop()`` then ``start()`` again
    restarts the daemon on the same repository (and the same ports).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.repo = self.workdir / "repo"
        self.log_path = self.workdir / "daemon.log"
        self.binary: Path | None = None
        self.api_port = 0
        self.gateway_port = 0
        self.rpc_port = 0
        self.swarm_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: ipfshttpclient.Client | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def api_multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.api_port}/http"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def swarm_multiaddr(self) -> str:
        """The swarm address without the peer ID (see :meth:`peer_id`)."""
        return f"/ip4/127.0.0.1/tcp/{self.swarm_port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise JsIpfsError("the js-ipfs daemon is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> JsIpfs:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["IPFS_PATH"] = str(self.repo)
        # js-ipfs reads no proxy settings, but keep anything it spawns on loopback as well.
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        env.pop("IPFS_MONITORING", None)
        env.pop("DEBUG", None)
        return env

    def _run(self, *args: str) -> str:
        assert self.binary is not None
        try:
            proc = subprocess.run(
                [str(self.binary), *args],
                capture_output=True,
                text=True,
                env=self._env(),
                timeout=COMMAND_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise JsIpfsError(f"jsipfs {' '.join(args)} took over {COMMAND_TIMEOUT:.0f} s") from exc
        if proc.returncode != 0:
            raise JsIpfsError(
                f"jsipfs {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        return proc.stdout

    def _init_repo(self) -> None:
        """Create the repository and point every address at 127.0.0.1."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.repo.exists():
            shutil.rmtree(self.repo)
        started = time.monotonic()
        self._run("init", "--empty-repo", "--profile", "test")
        self.api_port, self.gateway_port, self.rpc_port, self.swarm_port = free_ports(4)
        # Editing the JSON directly is the same as `jsipfs config` (which checks nothing more)
        # and saves a node start (~1 s) per key.
        config_path = self.repo / "config"
        config: dict[str, Any] = json.loads(config_path.read_text())
        addresses = config.setdefault("Addresses", {})
        addresses["API"] = self.api_multiaddr
        addresses["Gateway"] = f"/ip4/127.0.0.1/tcp/{self.gateway_port}"
        addresses["RPC"] = f"/ip4/127.0.0.1/tcp/{self.rpc_port}"
        addresses["Swarm"] = [self.swarm_multiaddr]
        addresses["Announce"] = []
        addresses["NoAnnounce"] = []
        addresses["Delegates"] = []  # delegated routing would ask public nodes
        config["Bootstrap"] = []
        discovery = config.setdefault("Discovery", {})
        discovery["MDNS"] = {"Enabled": False, "Interval": 10}
        discovery["webRTCStar"] = {"Enabled": False}
        routing = config.setdefault("Routing", {})
        routing["Type"] = "none"  # no DHT: there is nobody to ask
        config.setdefault("Swarm", {})["DisableNatPortMap"] = True  # no UPnP
        config["relay"] = {"enabled": False, "hop": {"enabled": False, "active": False}}
        config_path.write_text(json.dumps(config, indent=2))
        log.info(
            "js-ipfs repo %s initialised in %.1f s (API %d, gateway %d, RPC %d, swarm %d)",
            self.repo,
            time.monotonic() - started,
            self.api_port,
            self.gateway_port,
            self.rpc_port,
            self.swarm_port,
        )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no daemon log)"
        return "\n".join(text.splitlines()[-lines:])

    def _api_answers(self) -> bool:
        request = urllib.request.Request(f"{self.api_url}/api/v0/id", data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                body = json.loads(response.read())
        except (OSError, ValueError):
            return False
        return isinstance(body, dict) and bool(body.get("ID"))

    def start(self) -> None:
        """Start the daemon (initialising the repository first time) and wait for its API."""
        if self.running:
            return
        if self.binary is None:
            self.binary = find_jsipfs_binary()
        if not (self.repo / "config").exists():
            self._init_repo()
        started = time.monotonic()
        with open(self.log_path, "ab") as log_file:
            log_file.write(f"\n--- starting js-ipfs daemon at {time.ctime()} ---\n".encode())
            log_file.flush()
            self._proc = subprocess.Popen(
                [str(self.binary), "daemon", "--enable-preload=false"],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.workdir,
                start_new_session=True,
            )
        log.info("started js-ipfs daemon, pid %d", self._proc.pid)
        deadline = started + START_TIMEOUT
        for _ in range(int(START_TIMEOUT / POLL_INTERVAL) + 1):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise JsIpfsError(
                    f"js-ipfs daemon exited with code {code} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self._api_answers():
                log.info("js-ipfs API up after %.1f s", time.monotonic() - started)
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL)
        self.stop()
        raise JsIpfsError(
            f"js-ipfs API did not answer within {START_TIMEOUT:.0f} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM the daemon, wait up to 10 s, then SIGKILL it. Safe to call twice."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            started = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
                log.info(
                    "js-ipfs daemon %d stopped in %.1f s", proc.pid, time.monotonic() - started
                )
            except subprocess.TimeoutExpired:
                log.warning("js-ipfs daemon %d ignored SIGTERM; killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
                self._remove_stale_lock()
        else:
            self._remove_stale_lock()

    def _remove_stale_lock(self) -> None:
        """Remove the repo lock of a daemon that died without releasing it.

        Otherwise a restart fails for ~20 s until the lock counts as stale. Only called after
        our own daemon has been reaped, so nobody holds the lock.
        """
        lock = self.repo / "repo.lock"
        if lock.is_dir():
            shutil.rmtree(lock, ignore_errors=True)
        elif lock.exists():
            lock.unlink(missing_ok=True)

    # -- using it --------------------------------------------------------------------------

    def client(self) -> ipfshttpclient.Client:
        """An HTTP API client (``connect()`` refuses js-ipfs's version, so build it directly)."""
        if self._client is None:
            self._client = ipfshttpclient.Client(self.api_multiaddr)
        return self._client

    def peer_id(self) -> str:
        return str(self.client().id()["ID"])

    def add_path(self, path: Path) -> str:
        """Add a file, or a directory recursively; return the CIDv1 (base32) of ``path`` itself.

        Uses 256 KiB chunks, raw leaves and CIDv1 (js-ipfs does not imply raw leaves). Dot-files
        are included (``casfs add`` needs ``--hidden`` for that).
        """
        path = Path(path)
        if path.is_dir() and not any(path.iterdir()):
            # js-ipfs answers "Unexpected input: object" to an upload of just an empty directory.
            empty = self.client().object.new("unixfs-dir")
            return to_cidv1_base32(empty["Hash"])
        result = self.client().add(
            path,
            recursive=True,
            cid_version=1,
            raw_leaves=True,
            chunker=CHUNKER,
            period_special=False,
            pin=True,
        )
        if not isinstance(result, list):
            return to_cidv1_base32(result["Hash"])
        # For a directory, js-ipfs lists every entry as "<dirname>/<relative path>" and the
        # directory itself as "<dirname>".
        for entry in result:
            if entry["Name"] == path.name:
                return to_cidv1_base32(entry["Hash"])
        names = [entry["Name"] for entry in result]
        raise JsIpfsError(f"no entry for {path.name!r} in the add result: {names}")

    def add_bytes(self, data: bytes) -> str:
        """Add ``data`` as a file (256 KiB chunks, raw leaves); return its CIDv1 (base32)."""
        cid = self.client().add_bytes(
            data, opts={"cid-version": 1, "raw-leaves": True, "chunker": CHUNKER}
        )
        return to_cidv1_base32(cid)


@pytest.fixture(scope="session")
def jsipfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsIpfs]:
    """A started js-ipfs daemon for the whole session; fails (not skips) if it can't start."""
    node = JsIpfs(tmp_path_factory.mktemp("jsipfs"))
    error: JsIpfsError | None = None
    try:
        node.start()
    except JsIpfsError as exc:
        error = exc
    if error is not None:
        node.stop()
        pytest.fail(f"could not start js-ipfs: {error}", pytrace=False)
    try:
        yield node
    finally:
        node.stop()
