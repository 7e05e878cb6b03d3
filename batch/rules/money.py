"""Money in words: integer cents shown as dollars, the one place the formats are written.
Never floats: the digits come from integer division of the cents."""
from __future__ import annotations

__all__ = ["dollars", "plain_dollars"]


def _split(cents: int) -> tuple[str, int, int]:
    cents = int(cents)
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return sign, cents // 100, cents % 100


def dollars(cents: int) -> str:
    """For people: 123456 -> '$1,234.56', -100 -> '-$1.00'."""
    sign, whole, part = _split(cents)
    return f"{sign}${whole:,}.{part:02d}"


def plain_dollars(cents: int) -> str:
    """For files read by machines (CSV amounts): 123456 -> '1234.56', -100 -> '-1.00'."""
    sign, whole, part = _split(cents)
    return f"{sign}{whole}.{part:02d}"
