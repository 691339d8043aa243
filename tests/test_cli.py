"""Bad command-line input: one line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Casfs, random_file


@pytest.mark.parametrize("args", [
    ["add", "/nonexistent/file"],
    ["cat", "not-a-cid"],
    ["cat", "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"],
    ["cat", "--offset", "-1", "bafkreie7q3iidccmpvszul7kudcvvuavuo7u6gzlbobczuk5nqk3b4akba"],
    ["frobnicate"],
    [],
    ["umount", "/"],
])
def test_bad_input_is_one_line(casfs: Casfs, args: list[str]) -> None:
    res = casfs.run(*args, check=False)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_bad_config_is_one_line(casfs: Casfs) -> None:
    (casfs.home / "config.toml").write_text("[mount]\nread_ahead_kb = 'lots'\n")
    res = casfs.run("status", check=False)
    assert res.returncode != 0 and "read_ahead_kb" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_add_cat_roundtrip_and_ranges(casfs: Casfs, tmp_path: Path) -> None:
    f = random_file(tmp_path / "f", 1_000_003, seed=2)
    (cid,) = casfs.add(f)
    data = f.read_bytes()
    assert casfs.cat(cid) == data
    out = subprocess.run([sys.executable, "-m", "casfs", "cat", "--offset", "262140",
                          "--length", "9", cid], env=casfs.env, capture_output=True,
                         check=True).stdout
    assert out == data[262140:262149]
    status = casfs.run("status", "--json").stdout
    assert '"roots": 1' in status
