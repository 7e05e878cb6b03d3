"""batch/rules/cells.py: how text is written into files people open (the OWASP rule against CSV
injection) and files machines read (exact text, quoted)."""
from __future__ import annotations

import csv
import io

import pytest

from batch.rules.cells import for_people, machine_csv_writer, people_csv_writer


@pytest.mark.parametrize("text, shown", [
    ("=1+2", "'=1+2"), ("+1", "'+1"), ("-A1", "'-A1"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("Avery Sample", "Avery Sample"), ("O'Brien", "O'Brien"), ("", ""), (" =1", " =1"), ("a=1", "a=1"),
])
def test_for_people_prefixes_an_apostrophe_only_to_formula_like_text(text, shown):
    assert for_people(text) == shown


def test_people_csv_neutralises_text_columns_quotes_them_and_keeps_numbers():
    buf = io.StringIO()
    w = people_csv_writer(buf, {0, 2})
    w.writerow(["member", "amount", "reason"])
    w.writerow(["=1+2", "-12.34", "\rnew, line"])
    w.writerow(["M1", "5.00", None])
    assert buf.getvalue() == 'member,amount,reason\n"\'=1+2",-12.34,"\'\rnew, line"\n' + "M1,5.00,\n"
    assert list(csv.reader(io.StringIO(buf.getvalue(), newline=""))) == [
        ["member", "amount", "reason"], ["'=1+2", "-12.34", "'\rnew, line"], ["M1", "5.00", ""]]


def test_machine_csv_keeps_exact_text_every_field_quoted():
    buf = io.StringIO()
    machine_csv_writer(buf).writerow(["=1+2", "Avery \"A\" Sample", "12.50"])
    assert buf.getvalue() == '"=1+2","Avery ""A"" Sample","12.50"\n'
