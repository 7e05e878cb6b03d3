"""Trace numbers seen in one file, to find one used twice across batches.

A trace number is the 8-digit ODFI routing prefix (positions 80-87) and a 7-digit sequence number
(88-94). Within a batch the reader already requires ascending trace numbers, so a duplicate can
only come from another batch: `TraceSet` keeps one bitmap of sequence numbers per prefix.

Memory bound: a bitmap grows only up to the highest sequence number seen under its prefix, one bit
per number: at most 10,000,000 bits = 1.25 MB per prefix (a file of a million entries numbered from
1 needs 125 KB). At most `MAX_PREFIXES` (16) prefixes are tracked, so the whole set never exceeds
20 MB, whatever the file; past that the reader says trace numbers of further prefixes were not
compared (every batch's ODFI identification must equal its traces' prefix anyway, so files with
more than a few prefixes are rare).
"""
from __future__ import annotations

SEQUENCES = 10_000_000  # 7 digits
MAX_BYTES_PER_PREFIX = SEQUENCES // 8  # 1,250,000
MAX_PREFIXES = 16
_FULL = b"\xff"


class TraceSet:
    """Sequence numbers seen per 8-digit prefix, as growing bitmaps."""

    __slots__ = ("maps", "overflow")

    def __init__(self) -> None:
        self.maps: dict[str, bytearray] = {}
        self.overflow = False  # a prefix beyond MAX_PREFIXES was met (its traces not compared)

    def _map(self, prefix: str, top: int) -> bytearray | None:
        """The bitmap of `prefix`, grown to hold sequence number `top`; None past MAX_PREFIXES."""
        bm = self.maps.get(prefix)
        if bm is None:
            if len(self.maps) >= MAX_PREFIXES:
                self.overflow = True
                return None
            bm = self.maps[prefix] = bytearray()
        need = top // 8 + 1
        if len(bm) < need:
            # Grow geometrically (amortised), never past the 7-digit bound.
            bm.extend(bytes(min(max(need, 2 * len(bm)), MAX_BYTES_PER_PREFIX) - len(bm)))
        return bm

    def add(self, trace: str) -> bool:
        """Record one trace number; False when it was seen before (or is not 15 digits)."""
        seq = trace[8:15]
        if len(trace) != 15 or not seq.isdigit():
            return True  # malformed: reported as a field problem, not compared
        n = int(seq)
        bm = self._map(trace[:8], n)
        if bm is None:
            return True
        byte, bit = n >> 3, 1 << (n & 7)
        if bm[byte] & bit:
            return False
        bm[byte] |= bit
        return True

    def add_range(self, prefix: str, first: int, last: int) -> bool:
        """Record every sequence number first..last (inclusive) of one prefix. True when none of
        them was seen before; on False nothing is recorded (the caller then adds them one by one
        to find which)."""
        bm = self._map(prefix, last)
        if bm is None:
            return True
        a, b = first >> 3, last >> 3
        if a == b:
            mask = ((1 << (last - first + 1)) - 1) << (first & 7)
            if bm[a] & mask:
                return False
            bm[a] |= mask
            return True
        head = (0xFF << (first & 7)) & 0xFF
        tail = (1 << ((last & 7) + 1)) - 1
        if bm[a] & head or bm[b] & tail or bm[a + 1:b].count(0) != b - a - 1:
            return False
        bm[a] |= head
        bm[b] |= tail
        bm[a + 1:b] = _FULL * (b - a - 1)
        return True
