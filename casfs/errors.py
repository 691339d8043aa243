"""casfs's own exceptions. Only fs.py turns them into FUSE errors, only cli.py into exit codes."""


class CasfsError(Exception):
    """Root of every error casfs raises on purpose."""


class QuietError(CasfsError):
    """Bad user input or environment: printed as one line, no traceback."""

    def __init__(self, msg: str, exitcode: int = 1) -> None:
        super().__init__(msg)
        self.exitcode = exitcode


class BadName(CasfsError):
    """A name that is neither a CID nor a 64-hex sha256."""


class BlockNotFound(CasfsError):
    """No source holds the block."""


class BlockCorrupt(CasfsError):
    """A block's bytes do not match its hash or its recorded checksum."""


class SourceUnavailable(CasfsError):
    """A source could not be asked (down, unreachable, refused)."""


class DeadlineExceeded(CasfsError):
    """The block is known to exist but could not be fetched in time."""


class UnsupportedContent(CasfsError):
    """A DAG casfs does not read (unknown codec, HAMT-sharded directory, ...)."""
