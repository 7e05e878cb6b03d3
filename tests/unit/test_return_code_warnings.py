"""Return reason codes in the reader: a well-formed code the tables do not know, or a known code
used before it takes effect (by the file header's creation date), is a warning that leaves the
file valid, under both profiles; a malformed code stays an error. The files are sample_files/
returns.ach with one field changed (its totals and hash do not depend on the code)."""
from __future__ import annotations

from pathlib import Path

import pytest

import nacha.reader as reader_mod
from nacha.reader import read_file, validate_file

RETURNS = (Path(__file__).resolve().parents[2] / "sample_files" / "returns.ach").read_bytes()
LINES = RETURNS.split(b"\n")
# Line 4 is the first addenda 99 (R01), lines 8 and 12 the others (R10, R02); the file header's
# File Creation Date is positions 24-29 of line 1 (reference §1.2 field 6), here 260122.
assert LINES[3][:6] == b"799R01" and LINES[7][:6] == b"799R10" and LINES[11][:6] == b"799R02"
assert LINES[0][23:29] == b"260122"


def _with(code: bytes = b"R01", created: bytes | None = None, line: int = 4) -> bytes:
    lines = list(LINES)
    lines[line - 1] = lines[line - 1][:3] + code + lines[line - 1][6:]
    if created is not None:
        lines[0] = lines[0][:23] + created + lines[0][29:]
    return b"\n".join(lines)


def _where(issues) -> list[tuple]:
    return [(i.line, i.columns, i.record, i.field, i.value) for i in issues]


@pytest.mark.parametrize("profile", ["strict", "bank"])
@pytest.mark.parametrize("code", [b"R99", b"R48", b"R00", b"R66"])
def test_a_well_formed_unknown_code_is_a_warning_and_the_file_stays_valid(profile, code):
    r = validate_file(_with(code), profile, name="ret.ach")
    assert r.issues == [] and r.valid
    assert _where(r.warnings) == [(4, (4, 6), "addenda_99", "return_reason_code", code.decode())]
    (w,) = r.warnings
    assert f"unknown return reason code '{code.decode()}'" in w.message
    assert str(w).startswith("ret.ach:4:4-6: addenda_99.return_reason_code: ")
    assert w.to_json() == {"line": 4, "columns": [4, 6], "record": "addenda_99", "field": "return_reason_code",
                           "message": w.message}


@pytest.mark.parametrize("profile", ["strict", "bank"])
@pytest.mark.parametrize("code", [b"RXX", b"R0X", b"X01", b"r01", b"R 1", b"R1 ", b"C01", b"R\xb91"])
def test_a_malformed_code_stays_an_error(profile, code):
    r = validate_file(_with(code), profile, name="ret.ach")
    assert r.warnings == []
    assert not r.valid
    # (a non-ASCII byte is also reported as such, at the same place)
    assert {(i.line, i.columns, i.record, i.field) for i in r.issues} == {
        (4, (4, 6), "addenda_99", "return_reason_code")}, [str(i) for i in r.issues]
    assert any("malformed return reason code" in i.message for i in r.issues)


@pytest.mark.parametrize("profile", ["strict", "bank"])
def test_a_blank_code_stays_an_error(profile):
    r = validate_file(_with(b"   "), profile)
    assert r.warnings == [] and r.issues
    assert {(i.line, i.columns, i.field) for i in r.issues} == {(4, (4, 6), "return_reason_code")}


@pytest.mark.parametrize("profile", ["strict", "bank"])
@pytest.mark.parametrize("created, warned", [
    (b"260122", True),  # 2026-01-22
    (b"280316", True),  # the day before R90 takes effect
    (b"280317", False),  # 2028-03-17: in effect
    (b"290101", False),
])
def test_r90_warns_when_the_file_was_created_before_it_takes_effect(profile, created, warned):
    r = validate_file(_with(b"R90", created), profile, name="ret.ach")
    assert r.issues == []
    if warned:
        assert _where(r.warnings) == [(4, (4, 6), "addenda_99", "return_reason_code", "R90")]
        (w,) = r.warnings
        assert "2028-03-17" in w.message and f"20{created[:2].decode()}-{created[2:4].decode()}" in w.message
    else:
        assert r.warnings == []


@pytest.mark.parametrize("created", [b"281340", b"280230", b"2803 7"])
def test_r90_no_warning_when_the_creation_date_is_unusable(created):
    for profile in ("strict", "bank"):
        r = validate_file(_with(b"R90", created), profile)
        assert r.warnings == []
        assert [(i.line, i.field) for i in r.issues] == [(1, "file_creation_date")]  # that is an error


def test_r90_no_warning_without_a_file_header():
    # The bank profile accepts a return fragment without file header: no date, no warning.
    body = b"\n".join(LINES[1:13]) + b"\n"
    r = validate_file(body.replace(b"799R01", b"799R90"), "bank")
    assert r.issues == [] and r.warnings == []


def test_warnings_in_file_order_and_with_read_file():
    data = _with(b"R99")
    data = data.replace(b"799R10", b"799R90").replace(b"799R02", b"799R48")
    f = read_file(data, "strict")
    assert f.issues == []
    assert [(w.line, w.value) for w in f.warnings] == [(4, "R99"), (8, "R90"), (12, "R48")]


def test_known_codes_in_effect_give_no_warning():
    for code in (b"R01", b"R06", b"R21", b"R85"):
        r = validate_file(_with(code), "strict")
        assert r.issues == [] and r.warnings == []


def test_warnings_are_capped_like_issues(monkeypatch):
    monkeypatch.setattr(reader_mod, "MAX_ISSUES", 2)
    data = _with(b"R99").replace(b"799R10", b"799R98").replace(b"799R02", b"799R97")
    r = validate_file(data, "strict")
    assert r.issues == []
    assert [w.value for w in r.warnings[:2]] == ["R99", "R98"]
    assert len(r.warnings) == 3 and "stopped listing" in r.warnings[2].message
