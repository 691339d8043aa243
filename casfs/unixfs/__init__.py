"""UnixFS over dag-pb: the file and directory DAGs that IPFS builds, byte for byte."""

from casfs.unixfs.builder import CHUNK_SIZE, MAX_LINKS, FileBuilder
from casfs.unixfs.node import Kind, Link, Node, decode, encode_directory, encode_file

__all__ = ["CHUNK_SIZE", "MAX_LINKS", "FileBuilder", "Kind", "Link", "Node", "decode",
           "encode_directory", "encode_file"]
