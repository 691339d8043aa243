#!/usr/bin/env bash
# Installs everything casfs and its tests need, idempotently: Debian packages, a venv with casfs
# in it, and (with --ipfs) the pinned js-ipfs daemon the tests compare against.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
with_ipfs=0
[[ "${1:-}" == "--ipfs" ]] && with_ipfs=1

debs=(fuse3 libfuse3-dev pkg-config attr gcc libgmp-dev fio)
command -v npm >/dev/null || debs+=(nodejs npm)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
stamp=.venv/.casfs-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[test]"
  touch "$stamp"
fi

if ((with_ipfs)); then
  scripts/install-jsipfs.sh >&2
fi
