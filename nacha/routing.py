"""ABA routing numbers: the check digit (weights 3 7 1, NR2013 OR109 / reference §1.4) and shape."""
from __future__ import annotations

from functools import lru_cache

_WEIGHTS = (3, 7, 1, 3, 7, 1, 3, 7)


def check_digit(first8: str) -> str:
    """The ninth digit that makes an 8-digit Receiving DFI Identification a valid routing number."""
    if len(first8) != 8 or not (first8.isascii() and first8.isdigit()):
        raise ValueError("a routing number's first 8 characters must be ASCII digits")
    total = sum(int(c) * w for c, w in zip(first8, _WEIGHTS))
    return str((10 - total % 10) % 10)


@lru_cache(maxsize=65536)
def is_valid_routing(routing: str) -> bool:
    """True for 9 ASCII digits whose last digit is the check digit of the first eight."""
    if len(routing) != 9 or not (routing.isascii() and routing.isdigit()):
        return False
    return check_digit(routing[:8]) == routing[8]


def routing_problem(routing: str) -> str | None:
    """Why `routing` is not a valid ABA routing number, or None when it is."""
    if len(routing) != 9 or not (routing.isascii() and routing.isdigit()):
        return "a routing number is 9 digits"
    if not is_valid_routing(routing):
        return f"check digit should be {check_digit(routing[:8])}, got {routing[8]}"
    return None
