"""Text we write into files other programs open: the one place that decides how a stored value is
written so that it cannot attack the person who opens it (CSV or formula injection: a cell starting
with `=`, `+`, `-`, `@`, a tab or a carriage return is run as a formula by spreadsheet programs).

Stored values are never changed: names and other free text are stored exactly as imported. What
changes is how each kind of output writes them:

- **For people** (files opened in a spreadsheet: the report CSVs): `for_people` applies the OWASP
  rule: a text cell starting with one of those characters gets a leading apostrophe, which makes
  the spreadsheet take the cell for plain text, and is quoted (`people_csv_writer`). Amounts, counts and dates are ours (digits, a dot, a minus sign) and are
  written unchanged, so a negative amount stays a number.
- **xlsx** (the reports' workbooks): `xlsx_text` marks a text cell as a string cell, never a
  formula, whatever it starts with; the text itself is exact.
- **Machine-read** (files another system parses: the notice manifests of the print and email
  vendor): exact text, every field quoted (`machine_csv_writer`), so the vendor prints the name as
  it is.
"""
from __future__ import annotations

import csv
from typing import Any, TextIO

__all__ = ["FORMULA_START", "for_people", "is_formula_like", "machine_csv_writer", "people_csv_writer",
           "xlsx_text"]

# OWASP "CSV Injection": the characters that make a spreadsheet read a cell as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def is_formula_like(text: str) -> bool:
    """True when a spreadsheet would take `text` for a formula (it starts with FORMULA_START)."""
    return text.startswith(FORMULA_START)


def for_people(text: str) -> str:
    """`text` as written in a CSV people open: a leading apostrophe when it starts like a formula
    (OWASP), else unchanged."""
    return "'" + text if is_formula_like(text) else text


class _PeopleWriter:
    """Writes CSV rows for people: text cells neutralised (`for_people`) and then quoted; any cell
    holding a comma, a quote, a line feed or a carriage return quoted too (csv.writer with a "\\n"
    line terminator leaves a lone CR unquoted, which breaks the row). Other cells (numbers and
    dates as the caller formatted them) are written as given."""

    def __init__(self, out: TextIO, text_columns: set[int] | None):
        self._out = out
        self._text = text_columns

    def writerow(self, row: list[Any]) -> None:
        cells = []
        for i, v in enumerate(row):
            text = "" if v is None else str(v)
            quote = any(ch in text for ch in ',"\r\n')
            if isinstance(v, str) and (self._text is None or i in self._text) and is_formula_like(v):
                text, quote = for_people(v), True
            cells.append('"' + text.replace('"', '""') + '"' if quote else text)
        self._out.write(",".join(cells) + "\n")


def people_csv_writer(out: TextIO, text_columns: set[int] | None = None) -> _PeopleWriter:
    """A writer of CSVs people open: text in the columns `text_columns` (positions; None: every
    string) that starts like a formula is neutralised with `for_people` and quoted (OWASP)."""
    return _PeopleWriter(out, text_columns)


def machine_csv_writer(out: TextIO):
    """A csv.writer for exports other systems read: exact text, every field quoted (RFC 4180)."""
    return csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)


def xlsx_text(cell) -> None:
    """Make an openpyxl cell holding text a string cell (openpyxl takes any str starting with `=`
    for a formula): the exact text, never evaluated."""
    if isinstance(cell.value, str):
        cell.data_type = "s"
