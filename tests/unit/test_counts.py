"""Counts in words (issue 14: "1 batch", "1 entry", "1 problem", never "file(s)"): the one helper,
batch/rules/counts.py, and the CLI and pipeline lines that use it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from batch.rules.counts import counted, plural

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n, word, expected", [
    (1, "batch", "1 batch"), (2, "batch", "2 batches"), (1, "entry", "1 entry"), (3, "entry", "3 entries"),
    (1, "problem", "1 problem"), (0, "problem", "0 problems"), (1, "file", "1 file"), (2, "new file", "2 new files"),
    (1, "NOC", "1 NOC"), (2, "NOC", "2 NOCs"), (2, "policy", "2 policies"), (2, "day", "2 days"),
    (2, "mismatch", "2 mismatches"), (1234, "entry", "1,234 entries"), (1, "open item", "1 open item"),
    (2, "AutoPay pull", "2 AutoPay pulls"),
])
def test_counted_agrees_with_the_number(n, word, expected):
    assert counted(n, word) == expected


def test_an_irregular_plural_is_given():
    assert counted(2, "person", "people") == "2 people" and counted(1, "person", "people") == "1 person"
    assert plural("data problem") == "data problems"


def test_no_output_line_counts_with_a_parenthesised_plural():
    """No f-string of jobs/ or batch/ writes "file(s)", "item(s)", "mismatch(es)" after a number, and no
    module builds its own plural with `'s' if n != 1` or `'' if n == 1 else 's'`: they all go through
    batch/rules/counts.py."""
    offenders = []
    for path in sorted([*(ROOT / "jobs").rglob("*.py"), *(ROOT / "batch").rglob("*.py")]):
        text = path.read_text(encoding="utf-8")
        for i, line in enumerate(text.splitlines(), 1):
            if re.search(r"\}[^\"'{]*\w\((s|es)\)", line) or re.search(r"""['"]s['"] if |else ['"]e?s['"]""", line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert offenders == []
