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

    @property
    def log_file(self) -> Path:
        return self.home / "casfs.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "mount.pid"


_SECTIONS = {"mount": ("read_ahead_kb", "max_tasks"), "cache": ("max_cached_nodes",),
             "log": ("log_level",)}


def _check(name: str, value: Any, default: Any) -> Any:
    if type(value) is not type(default) or (isinstance(value, int) and value < 0):
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
            allowed = _SECTIONS.get(section)
            if allowed is None or not isinstance(table, dict):
                raise QuietError(f"config {path}: unknown section [{section}]")
            for key, value in table.items():
                if key not in allowed:
                    raise QuietError(f"config {path}: unknown key {section}.{key}")
                values[key] = _check(f"{section}.{key}", value, defaults[key])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(cfg, **values)
