#!/usr/bin/env bash
# Install js-ipfs (npm package `ipfs` 0.66.1) for casfs's compatibility tests.
#
# Installs into ${CASFS_TEST_CACHE:-$HOME/.cache/casfs-test}/jsipfs. Idempotent: a stamp file
# that records the package.json makes a second run a no-op. Quiet on success; the last line on
# stdout is the absolute path of the `jsipfs` binary.
#
# The overrides pin transitive libp2p packages to versions that work on Node 20; without them
# the daemon fails with `Promise.withResolvers is not a function`, the swarm does not listen and
# identify fails.
set -euo pipefail

cache="${CASFS_TEST_CACHE:-$HOME/.cache/casfs-test}"
dest="$cache/jsipfs"
bin="$dest/node_modules/.bin/jsipfs"
stamp="$dest/.installed"

package_json='{
  "name": "casfs-test-jsipfs",
  "version": "0.0.0",
  "private": true,
  "description": "js-ipfs daemon for casfs compatibility tests",
  "dependencies": {
    "ipfs": "0.66.1"
  },
  "overrides": {
    "@multiformats/mafmt": "11.1.0",
    "@libp2p/tcp": "6.0.9",
    "@libp2p/websockets": "5.0.5",
    "@libp2p/bootstrap": "6.0.0",
    "@libp2p/peer-record": "5.0.2",
    "mortice": "3.0.6"
  }
}'

installed() { [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$package_json" ]]; }

if installed; then
    printf '%s\n' "$bin"
    exit 0
fi

command -v npm >/dev/null || { echo "install-jsipfs: npm not found (need Node >= 18)" >&2; exit 1; }

mkdir -p "$dest"
# One installer at a time (parallel test runs); the winner's install serves the others.
exec 9>"$cache/jsipfs.lock"
if command -v flock >/dev/null; then
    flock -w 1200 9 || { echo "install-jsipfs: timed out waiting for $cache/jsipfs.lock" >&2; exit 1; }
fi
if installed; then
    printf '%s\n' "$bin"
    exit 0
fi
rm -f "$stamp"
printf '%s\n' "$package_json" > "$dest/package.json"
log="$dest/npm-install.log"
# An optional dependency (electron-webrtc -> headless) is a GitHub tarball, which cannot be
# fetched here; npm's default retry back-off turns that failure into ~2 minutes of waiting.
# Short back-offs keep the retries but not the wait; --prefer-offline skips revalidating
# ~1000 package documents when npm's cache already has them.
if ! (cd "$dest" && npm install --no-audit --no-fund --loglevel=error --no-update-notifier \
        --prefer-offline --fetch-retry-mintimeout=1000 --fetch-retry-maxtimeout=3000 \
        >"$log" 2>&1); then
    echo "install-jsipfs: npm install failed; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
fi
if [[ ! -x "$bin" ]]; then
    echo "install-jsipfs: npm install succeeded but $bin is missing" >&2
    exit 1
fi
printf '%s\n' "$package_json" > "$stamp"
printf '%s\n' "$bin"
