"""Bytes to standard output (`--out -`), without click's deprecated `get_binary_stream`."""
from __future__ import annotations

import sys

__all__ = ["write_stdout_bytes"]


def write_stdout_bytes(data: bytes) -> None:
    """Write `data` as-is to standard output, after whatever text was written to it before."""
    sys.stdout.flush()
    stream = sys.stdout.buffer
    stream.write(data)
    stream.flush()
