"""Private swarms: a pre-shared key in IPFS's swarm.key format, and sharing it safely.

With a key, the node's libp2p host encrypts every connection with it (py-libp2p's PSK, Salsa20;
FACTS.md: likely not go-libp2p compatible), so nodes without the same key cannot connect at
all. A key is shared with a trusted peer encrypted to that peer's own ed25519 key (a sealed box
to its X25519 form), over a connection both already have; only that peer can open it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from multiformats import multibase
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519, crypto_sign_ed25519_sk_to_curve25519
from nacl.public import PrivateKey, PublicKey, SealedBox

HEADER = "/key/swarm/psk/1.0.0/\n/base16/\n"


def generate() -> str:
    return HEADER + secrets.token_hex(32) + "\n"


def parse(text: str) -> str:
    """The key as 64 hex digits; ValueError if text is not a swarm.key."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) != 3 or lines[0] != "/key/swarm/psk/1.0.0/" or lines[1] != "/base16/":
        raise ValueError("not a swarm.key (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits)")
    key = lines[2].lower()
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError("the key must be 64 hex digits")
    return key


def write(path: Path, text: str) -> None:
    parse(text)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(home: Path) -> str | None:
    path = home / "swarm.key"
    return parse(path.read_text()) if path.exists() else None


def _ed25519_from_did(did: str) -> bytes:
    if not did.startswith("did:key:"):
        raise ValueError("not a did:key")
    raw = multibase.decode(did[len("did:key:"):])
    if raw[:2] != b"\xed\x01" or len(raw) != 34:
        raise ValueError("not an ed25519 did:key")
    return raw[2:]


def seal_for(peer_id: str, did: str, text: str) -> bytes:
    """Encrypt text to the peer whose did:key is did — which must be the key behind peer_id,
    so a peer cannot have a key sealed to someone else's did."""
    pub = _ed25519_from_did(did)
    if str(ID.from_pubkey(Ed25519PublicKey.from_bytes(pub))) != peer_id:
        raise ValueError("the peer's did:key does not match its peer id")
    return SealedBox(PublicKey(crypto_sign_ed25519_pk_to_curve25519(pub))).encrypt(text.encode())


def open_sealed(pair: KeyPair, sealed: bytes) -> str:
    seed_and_pub = pair.private_key.to_bytes()
    if len(seed_and_pub) == 32:  # a bare seed: append the public key, as libsodium wants
        seed_and_pub += pair.public_key.to_bytes()
    curve = crypto_sign_ed25519_sk_to_curve25519(seed_and_pub)
    return SealedBox(PrivateKey(curve)).decrypt(sealed).decode()
