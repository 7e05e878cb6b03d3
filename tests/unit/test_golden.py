"""Golden files in sample_files/: each sample's validation result (errors and warnings) and summary
equal the `<name>.expected.json` beside it (written by hand, not produced by the code under test); the debit,
return and NOC files are rebuilt here from specs (records made with `layout.make`) and compared
byte for byte; every bank-profile sample needs exactly its own relaxation."""
from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import pytest

from nacha import codes
from nacha.calendar import next_banking_day
from nacha.describe import describe
from nacha.layouts import (
    ADDENDA_05,
    ADDENDA_98,
    ADDENDA_99,
    BATCH_HEADER,
    ENTRY_COR,
    ENTRY_PPD,
    ENTRY_TEL,
    ENTRY_WEB,
    FILE_HEADER,
)
from nacha.model import Batch, Entry, NachaFile
from nacha.profile import BANK, STRICT, Profile
from nacha.reader import validate_file
from nacha.writer import format_file

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"

# -- synthetic originator and bank -------------------------------------------------------------------
ODFI_ROUTING = "021000021"
ODFI = "02100002"
COMPANY = dict(company_name="COMMONWEALTH HIX", company_identification="1987654321")
FILE_DATE = date(2026, 1, 16)  # a Friday; Monday 2026-01-19 is Martin Luther King Jr. Day
EFFECTIVE = "260120"  # the next Fed banking day after the file date (typed in, checked below)


def _bh(sec, discretionary, **kw):
    return BATCH_HEADER.make(service_class_code="225", company_discretionary_data=discretionary,
                             standard_entry_class_code=sec, company_entry_description="PREMIUM",
                             company_descriptive_date="FEB 26", effective_entry_date=EFFECTIVE,
                             originator_status_code="1", originating_dfi_identification=ODFI, **COMPANY, **kw)


def _e(layout, tc, rdfi, cd, account, cents, member, name, seq, tail=None, **kw):
    extra = {} if tail is None else ({"payment_type_code": tail} if "payment_type_code" in layout.index
                                     else {"discretionary_data": tail})
    return layout.make(transaction_code=tc, receiving_dfi_identification=rdfi, check_digit=cd,
                       dfi_account_number=account, amount=cents, individual_identification_number=member,
                       individual_name=name, trace_number=f"{ODFI}{seq:07d}", **extra, **kw)


def debits_spec() -> NachaFile:
    """debits-web-ppd-tel.ach: the file we would send on 2026-01-16."""
    header = FILE_HEADER.make(immediate_destination=" " + ODFI_ROUTING, immediate_origin="1987654321",
                              file_creation_date="260116", file_creation_time="2215", file_id_modifier="A",
                              immediate_destination_name="FIRST SYNTHETIC BANK",
                              immediate_origin_name="COMMONWEALTH HIX")
    web_s = Batch(_bh("WEB", "PORTAL"), [
        Entry(_e(ENTRY_WEB, "27", "01100001", "5", "4417305529", 45210, "M100234567", "ALICE EXAMPLE", 1, "S")),
        Entry(_e(ENTRY_WEB, "37", "23138010", "4", "88120044719", 31877, "M100345678", "BRUNO SAMPLE", 2, "S"),
              [ADDENDA_05.make(payment_related_information="PORTAL CONFIRMATION P260116-0042")]),
        Entry(_e(ENTRY_WEB, "27", "01100001", "5", "5530291176", 120000, "M100456789", "CHEN TESTCASE", 3, "S")),
    ])
    web_r = Batch(_bh("WEB", "AUTOPAY ONLINE"), [
        Entry(_e(ENTRY_WEB, "27", "26107337", "1", "7001234098", 52875, "M100567890", "DIANA PLACEHOLDER", 4, "R")),
        Entry(_e(ENTRY_WEB, "37", "23138010", "4", "3316678204", 8900, "M100678901", "EVAN FICTIONAL", 5, "R"),
              [ADDENDA_05.make(payment_related_information="AUTOPAY MANDATE AP-000517")]),
    ])
    ppd = Batch(_bh("PPD", "AUTOPAY PAPER"), [
        Entry(_e(ENTRY_PPD, "37", "05300001", "5", "9020117735", 64000, "M100789012", "FAITH DUMMY", 6)),
        Entry(_e(ENTRY_PPD, "27", "23138010", "4", "6605538812", 27312, "M100890123", "GUS NOBODY", 7)),
        Entry(_e(ENTRY_PPD, "27", "11400065", "3", "2208857461", 15050, "M100901234", "HANA EXEMPLAR", 8),
              [ADDENDA_05.make(payment_related_information="PAPER AUTHORIZATION PF-2025-1187")]),
    ])
    tel = Batch(_bh("TEL", "PHONE"), [
        Entry(_e(ENTRY_TEL, "27", "11400065", "3", "1147720953", 39999, "M101012345", "IVAN MOCKINGTON", 9, "S")),
        Entry(_e(ENTRY_TEL, "37", "26107337", "1", "5873300116", 7550, "M101123456", "JUDY STANDIN", 10, "S")),
    ])
    return NachaFile(header, [web_s, web_r, ppd, tel])


def _bank_header(yymmdd, hhmm):
    return FILE_HEADER.make(immediate_destination="1987654321", immediate_origin=" " + ODFI_ROUTING,
                            file_creation_date=yymmdd, file_creation_time=hhmm, file_id_modifier="A",
                            immediate_destination_name="COMMONWEALTH HIX",
                            immediate_origin_name="FIRST SYNTHETIC BANK")


def _return(layout, tc, rdfi_of_original, account, cents, member, name, trace, code, original_trace, tail=None):
    """A return entry as the RDFI builds it (reference §1.13): our ODFI as receiving DFI, the
    original account, amount and names, a new trace from the returning bank, addenda 99."""
    extra = {} if tail is None else ({"payment_type_code": tail} if "payment_type_code" in layout.index
                                     else {"discretionary_data": tail})
    rec = layout.make(transaction_code=tc, receiving_dfi_identification=ODFI, check_digit="1",
                      dfi_account_number=account, amount=cents, individual_identification_number=member,
                      individual_name=name, trace_number=trace, **extra)
    add = ADDENDA_99.make(return_reason_code=code, original_entry_trace_number=original_trace,
                          original_receiving_dfi_identification=rdfi_of_original)
    return Entry(rec, [add])


def returns_spec() -> NachaFile:
    """returns.ach: the bank's return file of 2026-01-22 for entries of debits-web-ppd-tel.ach."""
    def rbh(sec, discretionary, rdfi):
        return _bh(sec, discretionary)._replace(originating_dfi_identification=rdfi, settlement_date="020")
    return NachaFile(_bank_header("260122", "0600"), [
        Batch(rbh("WEB", "PORTAL", "01100001"), [
            _return(ENTRY_WEB, "26", "01100001", "4417305529", 45210, "M100234567", "ALICE EXAMPLE",
                    "011000010000101", "R01", "021000020000001", "S")]),
        Batch(rbh("WEB", "AUTOPAY ONLINE", "26107337"), [
            _return(ENTRY_WEB, "26", "26107337", "7001234098", 52875, "M100567890", "DIANA PLACEHOLDER",
                    "261073370000201", "R10", "021000020000004", "R")]),
        Batch(rbh("PPD", "AUTOPAY PAPER", "05300001"), [
            _return(ENTRY_PPD, "36", "05300001", "9020117735", 64000, "M100789012", "FAITH DUMMY",
                    "053000010000301", "R02", "021000020000006")]),
    ])


def nocs_spec() -> NachaFile:
    """nocs.ach: one COR batch from the RDFI 23138010 with C01, C02 and C05."""
    def noc(tc, account, member, name, tail, seq, code, original_seq, corrected):
        rec = ENTRY_COR.make(transaction_code=tc, receiving_dfi_identification=ODFI, check_digit="1",
                             dfi_account_number=account, amount=0, individual_identification_number=member,
                             individual_name=name, discretionary_data=tail, trace_number=f"23138010{seq:07d}")
        add = ADDENDA_98.make(change_code=code, original_entry_trace_number=f"{ODFI}{original_seq:07d}",
                              original_receiving_dfi_identification="23138010", corrected_data=corrected)
        return Entry(rec, [add])
    bh = _bh("COR", "")._replace(originating_dfi_identification="23138010", settlement_date="020")
    return NachaFile(_bank_header("260123", "0600"), [Batch(bh, [
        noc("36", "88120044719", "M100345678", "BRUNO SAMPLE", "S", 401, "C01", 2,
            codes.format_corrected_data("C01", account_number="88120044791")),
        noc("36", "3316678204", "M100678901", "EVAN FICTIONAL", "R", 402, "C02", 5,
            codes.format_corrected_data("C02", routing_number="021200025")),
        noc("26", "6605538812", "M100890123", "GUS NOBODY", "", 403, "C05", 7,
            codes.format_corrected_data("C05", transaction_code="37")),
    ])])


SPECS = {"debits-web-ppd-tel.ach": debits_spec, "returns.ach": returns_spec, "nocs.ach": nocs_spec}


# -- the samples and their expected results -----------------------------------------------------------
def _samples() -> list[str]:
    return sorted(p.name[: -len(".expected.json")] + ".ach" for p in SAMPLES.glob("*.expected.json"))


def _expected(name: str) -> dict:
    return json.loads((SAMPLES / name.replace(".ach", ".expected.json")).read_text())


def test_every_sample_has_its_expected_result_and_is_documented():
    achs = sorted(p.name for p in SAMPLES.glob("*.ach"))
    assert achs == _samples()
    readme = (SAMPLES / "README.md").read_text()
    section = readme.split("## NACHA samples", 1)[1].split("\n## ", 1)[0]
    for name in achs:
        assert f"`{name}`" in section, f"{name} is not documented in sample_files/README.md"


def test_the_required_samples_exist():
    names = set(_samples())
    assert {"debits-web-ppd-tel.ach", "returns.ach", "nocs.ach"} <= names
    invalid = [n for n in names if not _expected(n)["valid"]]
    assert len(invalid) >= 12
    # a valid file with a warning (a return reason code the tables do not know)
    assert any(_expected(n)["valid"] and _expected(n).get("warnings") for n in names)
    relaxations = {_expected(n).get("relaxation") for n in names} - {None}
    assert relaxations == set(BANK.relaxations())


def _matches(found, expected: list[dict]) -> None:
    """Issues (errors or warnings) equal the expected ones by line, columns, record and field, in
    order, each with a message holding `message_contains` when given."""
    got = [{"line": i.line, "columns": list(i.columns) if i.columns else None, "record": i.record,
            "field": i.field} for i in found]
    want = [{k: e[k] for k in ("line", "columns", "record", "field")} for e in expected]
    assert got == want, [str(i) for i in found]
    for i, e in zip(found, expected):
        assert i.message
        if "message_contains" in e:
            assert e["message_contains"] in i.message


@pytest.mark.parametrize("name", _samples())
def test_validation_result_matches_expected(name):
    exp = _expected(name)
    r = validate_file(SAMPLES / name, exp["profile"])
    _matches(r.issues, exp.get("errors", []))
    _matches(r.warnings, exp.get("warnings", []))
    assert (not r.issues) == exp["valid"]


SUMMARY_KEYS = ("file_id_modifier", "batches", "entries", "total_debit_cents", "total_credit_cents", "entry_hash",
                "sec_codes", "returns", "nocs")


@pytest.mark.parametrize("name", [n for n in _samples() if _expected(n)["valid"]])
def test_summary_matches_expected(name):
    exp = _expected(name)
    summary, issues = describe(SAMPLES / name, exp["profile"])
    assert issues == []
    assert {k: summary[k] for k in SUMMARY_KEYS} == {k: exp["summary"][k] for k in SUMMARY_KEYS}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_rebuilt_from_spec_byte_for_byte(name):
    text = format_file(SPECS[name]())
    assert text.encode("ascii") == (SAMPLES / name).read_bytes()


def test_debits_effective_date_is_the_next_fed_banking_day():
    assert next_banking_day(FILE_DATE) == date(2026, 1, 20)
    f = debits_spec()
    assert {b.header.effective_entry_date for b in f.batches} == {EFFECTIVE}
    assert f.header.file_creation_date == FILE_DATE.strftime("%y%m%d")


def test_debits_file_follows_our_origination_rules():
    """Slices of the golden bytes (positions from the reference, not from nacha.layouts)."""
    lines = (SAMPLES / "debits-web-ppd-tel.ach").read_text().split("\n")[:-1]
    headers = [ln for ln in lines if ln[0] == "5"]
    assert [(h[50:53], h[1:4], h[53:63].rstrip(), h[79:87]) for h in headers] == [
        ("WEB", "225", "PREMIUM", ODFI)] * 2 + [("PPD", "225", "PREMIUM", ODFI), ("TEL", "225", "PREMIUM", ODFI)]
    entries = [ln for ln in lines if ln[0] == "6"]
    assert {e[1:3] for e in entries} == {"27", "37"}
    assert [e[76:78] for e in entries[:5]] == ["S ", "S ", "S ", "R ", "R "]
    traces = [e[79:94] for e in entries]
    assert traces == sorted(traces) and all(t.startswith(ODFI) for t in traces)
    assert all(e[39:54].startswith("M1") for e in entries)  # member ids as individual ids


def _debit_entries() -> dict[str, str]:
    lines = (SAMPLES / "debits-web-ppd-tel.ach").read_text().split("\n")
    return {ln[79:94]: ln for ln in lines if ln[:1] == "6"}


def test_returns_point_at_entries_of_the_debit_file():
    originals = _debit_entries()
    lines = (SAMPLES / "returns.ach").read_text().split("\n")
    codes_seen = []
    for i, ln in enumerate(lines):
        if ln[:3] == "799":
            entry = lines[i - 1]
            orig = originals[ln[6:21]]
            codes_seen.append(ln[3:6])
            assert ln[27:35] == orig[3:11]  # original RDFI
            assert entry[29:39] == orig[29:39]  # amount
            assert entry[12:29] == orig[12:29]  # account
            assert entry[1:3] == {"27": "26", "37": "36"}[orig[1:3]]
            assert entry[3:12] == ODFI_ROUTING
    assert {"R01", "R02", "R10"} <= set(codes_seen)


def test_nocs_point_at_entries_of_the_debit_file():
    originals = _debit_entries()
    lines = (SAMPLES / "nocs.ach").read_text().split("\n")
    seen = []
    for i, ln in enumerate(lines):
        if ln[:3] == "798":
            entry = lines[i - 1]
            orig = originals[ln[6:21]]
            seen.append(ln[3:6])
            assert ln[27:35] == orig[3:11]
            assert entry[29:39] == "0" * 10
            assert entry[1:3] in ("26", "36")
            assert codes.parse_corrected_data(ln[3:6], ln[35:64])
    assert sorted(seen) == ["C01", "C02", "C05"]


# -- bank-profile samples --------------------------------------------------------------------------------
TOPIC = {
    "crlf": "CR LF",
    "missing_final_newline": "line feed",
    "missing_filler": "9-records",
    "trimmed_lines": "trimmed",
    "unbroken_records": "line breaks",
    "blank_lines": "blank line",
    "missing_file_envelope": "missing",
    "blank_fields_on_returns": "blank",
    "return_field_defects": "YYMMDD",
}


def _bank_samples():
    return [(n, _expected(n)["relaxation"]) for n in _samples() if _expected(n).get("relaxation")]


@pytest.mark.parametrize("name,relaxation", _bank_samples())
def test_bank_sample_needs_exactly_its_relaxation(name, relaxation):
    path = SAMPLES / name
    strict = validate_file(path, STRICT)
    assert strict.issues, f"{name} passes strict"
    assert any(TOPIC[relaxation] in i.message for i in strict.issues), [str(i) for i in strict.issues]
    assert validate_file(path, BANK).issues == []
    only = dataclasses.replace(STRICT, name="only-" + relaxation, **{relaxation: True})
    assert validate_file(path, only).issues == [], f"{name} needs more than {relaxation}"
    assert isinstance(only, Profile)
