"""Configuration: one TOML file → one frozen Config, passed down explicitly.

Lookup order: built-in defaults, then `$CASFS_HOME/config.toml` (or --config), then flags.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from casfs.errors import QuietError


def default_home() -> Path:
    env = os.environ.get("CASFS_HOME")
    if env:
        return Path(env).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "casfs"


@dataclass(frozen=True)
class Config:
    home: Path
    # Kernel readahead for the mount, in KiB: 1024 makes the kernel send 1 MiB read requests.
    read_ahead_kb: int = 1024
    # Nodes (decoded DAG blocks) kept in memory.
    max_cached_nodes: int = 16384
    log_level: str = "INFO"
    # pyfuse3 worker tasks: more lets slow fetches overlap with local reads.
    max_tasks: int = 64
    # The discovery chain: which kinds of source, in which order, and how long a read waits.
    chain_order: tuple[str, ...] = ("peer", "ipfs", "gateway")
    deadline: float = 30.0
    # Blocks fetched ahead of a sequential reader.
    readahead_bytes: int = 32 << 20
    # A small (random) read puts the rest of its 256 KiB blocks into the kernel's page cache.
    push_blocks: bool = True
    # IPFS node RPC API (kubo's, e.g. /ip4/127.0.0.1/tcp/5001/http); empty: no IPFS link.
    ipfs_api: str = ""
    ipfs_timeout: float = 10.0
    ipfs_retry_after: float = 2.0
    # IPFS HTTP gateway (e.g. http://127.0.0.1:8080); empty: no gateway link.
    gateway_url: str = ""
    gateway_timeout: float = 10.0
    gateway_retry_after: float = 2.0
    # Disk quota for the store in bytes (0: none) and how to choose what to evict.
    quota_bytes: int = 0
    cache_strategy: str = "lru"  # "lru", "trust-based" or "predictive"
    memory_cache_bytes: int = 64 << 20  # verified remote blocks kept in memory
    # Pinning policy (the seed's PinningPolicy and CollaborativePinning).
    auto_pin_trust_threshold: float = 0.0  # 0: off; else pin what peers this trusted announce
    recent_access_window: float = 0.0  # seconds; 0: off; else pin files read within it
    collaborative: bool = False
    min_peers: int = 2
    trust_required: float = 0.5
    # Peers: listen addresses, peers to keep connected to, bytes/s served (0: no limit).
    p2p_enabled: bool = True
    p2p_listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    p2p_bootstrap: tuple[str, ...] = ()
    p2p_bandwidth_limit: int = 0
    # Peers (did:key or peer id) allowed private blocks; others get a refusal.
    p2p_trusted: tuple[str, ...] = ()
    ipfs_bandwidth_limit: int = 0  # bytes/s fetched from the IPFS node (0: no limit)
    # Routing: "" keeps chain.order; else performance, trust, privacy-first or cost.
    routing_strategy: str = ""
    # Content classes that put peers first, and those that put the IPFS links first. Off by
    # default: the seed's lists put every public file on IPFS first, and the default chain is
    # local → peers → IPFS → gateway.
    content_classes: bool = False
    prefer_p2p: tuple[str, ...] = ("private", "recent", "small")
    prefer_ipfs: tuple[str, ...] = ("public", "large", "archived")

    @property
    def log_file(self) -> Path:
        return self.home / "casfs.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "mount.pid"

    @property
    def control_socket(self) -> Path:
        return self.home / "control.sock"

    @property
    def status_file(self) -> Path:
        return self.home / "status.json"


# TOML section.key -> Config field
_KEYS = {
    "mount": {"read_ahead_kb": "read_ahead_kb", "max_tasks": "max_tasks",
              "readahead_bytes": "readahead_bytes", "push_blocks": "push_blocks"},
    "cache": {"max_cached_nodes": "max_cached_nodes", "quota_bytes": "quota_bytes",
              "strategy": "cache_strategy", "memory_bytes": "memory_cache_bytes"},
    "pinning": {"auto_pin_trust_threshold": "auto_pin_trust_threshold",
                "recent_access_window": "recent_access_window",
                "collaborative": "collaborative", "min_peers": "min_peers",
                "trust_required": "trust_required"},
    "log": {"level": "log_level"},
    "chain": {"order": "chain_order", "deadline": "deadline", "strategy": "routing_strategy",
              "classes": "content_classes", "prefer_p2p": "prefer_p2p",
              "prefer_ipfs": "prefer_ipfs"},
    "ipfs": {"api": "ipfs_api", "timeout": "ipfs_timeout", "retry_after": "ipfs_retry_after",
             "bandwidth_limit": "ipfs_bandwidth_limit"},
    "gateway": {"url": "gateway_url", "timeout": "gateway_timeout",
                "retry_after": "gateway_retry_after"},
    "p2p": {"enabled": "p2p_enabled", "listen": "p2p_listen", "bootstrap": "p2p_bootstrap",
            "bandwidth_limit": "p2p_bandwidth_limit", "trusted": "p2p_trusted"},
}
KINDS = ("peer", "ipfs", "gateway")


def _check(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise QuietError(f"config: {name} must be a list of strings")
        if name == "chain.order" and any(v not in KINDS for v in value):
            raise QuietError(f"config: {name} must be drawn from {list(KINDS)}")
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not type(default) or (isinstance(value, int | float) and value < 0):
        raise QuietError(f"config: {name} must be a {type(default).__name__} ≥ 0, got {value!r}")
    return value


def load(home: Path | None = None, path: Path | None = None, **overrides: Any) -> Config:
    home = home or default_home()
    cfg = Config(home=home)
    path = path or home / "config.toml"
    values: dict[str, Any] = {}
    if path.exists():
        try:
            doc = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise QuietError(f"config {path}: {exc}") from None
        defaults = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
        for section, table in doc.items():
            allowed = _KEYS.get(section)
            if allowed is None or not isinstance(table, dict):
                raise QuietError(f"config {path}: unknown section [{section}]")
            for key, value in table.items():
                if key not in allowed:
                    raise QuietError(f"config {path}: unknown key {section}.{key}")
                name = allowed[key]
                values[name] = _check(f"{section}.{key}", value, defaults[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    strategy = values.get("cache_strategy", cfg.cache_strategy)
    if strategy not in ("lru", "trust-based", "predictive"):
        raise QuietError(f"config: cache.strategy must be lru, trust-based or predictive, "
                         f"not {strategy!r}")
    routing = values.get("routing_strategy", cfg.routing_strategy)
    if routing not in ("", "performance", "trust", "privacy-first", "cost"):
        raise QuietError(f"config: chain.strategy must be performance, trust, privacy-first "
                         f"or cost, not {routing!r}")
    return replace(cfg, **values)
