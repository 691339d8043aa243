"""The node's identity: an ed25519 key made once and kept in the state directory."""

from __future__ import annotations

import os
from pathlib import Path

from libp2p.crypto.ed25519 import Ed25519PrivateKey, create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from multiformats import multibase

_ED25519_PUB = b"\xed\x01"  # multicodec ed25519-pub, varint


def load_or_create(home: Path) -> KeyPair:
    path = home / "identity.key"
    if path.exists():
        private = Ed25519PrivateKey.from_bytes(path.read_bytes())
        return KeyPair(private, private.get_public_key())
    pair = create_new_key_pair()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pair.private_key.to_bytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return pair


def did_key(pair: KeyPair) -> str:
    """did:key of the ed25519 public key (multibase base58btc of multicodec + key)."""
    return "did:key:" + multibase.encode(_ED25519_PUB + pair.public_key.to_bytes(), "base58btc")


def peer_id(pair: KeyPair) -> ID:
    return ID.from_pubkey(pair.public_key)
