"""The discovery chain: local store → peers → IPFS node → IPFS gateway."""

from casfs.chain.base import ContentSource, P2PContentRequest, SourceStats
from casfs.chain.chain import DiscoveryChain

__all__ = ["ContentSource", "DiscoveryChain", "P2PContentRequest", "SourceStats"]
