"""Counts in words, for every line a person reads: "1 batch", "2 batches", "1 entry", "3 entries",
"1 problem", "2 NOCs": the noun agrees with its number (never "file(s)")."""
from __future__ import annotations

__all__ = ["counted", "plural"]


def plural(word: str) -> str:
    """The plural of an English noun of ours: entry -> entries, batch -> batches, day -> days,
    NOC -> NOCs. A phrase's last word is the one made plural ("bank file" -> "bank files")."""
    head, _, last = word.rpartition(" ")
    if last.isupper():
        many = last + "s"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        many = last[:-1] + "ies"
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        many = last + "es"
    else:
        many = last + "s"
    return f"{head} {many}" if head else many


def counted(n: int, word: str, many: str | None = None) -> str:
    """`n` and the noun that agrees with it: counted(1, "entry") == "1 entry",
    counted(1234, "entry") == "1,234 entries"; `many` for an irregular plural."""
    return f"{n:,} {word if n == 1 else (many or plural(word))}"
