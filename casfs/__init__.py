"""casfs: a content-addressed filesystem whose names are IPFS CIDs."""

__version__ = "0.1.0"
