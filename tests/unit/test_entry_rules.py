"""Every entry check of nacha.entry_rules.ENTRY_CHECKS is reached on every path of the reader: a
file breaking exactly that check gives the same problems read with the fast lanes (column runs and
the per-record fast finish) as read with every entry on the record path, and that problem is one
of them. A LEAVE check switched off in the list makes the fast lanes miss its problem: the list,
not a copy of it, decides what they skip."""
from __future__ import annotations

import pytest

from nacha import entry_rules
from nacha import sec as _sec
from nacha.layouts import BATCH_CONTROL, BATCH_HEADER, FILE_CONTROL, FILE_HEADER
from nacha.reader import Reader
from test_columns import ODFI, clean_run

ROW = 5  # the entry broken in a batch of 12


def _wrap(code: str, lines: list[str], scc: str = "200") -> str:
    fmt = _sec.sec_format(code)
    fh = FILE_HEADER.make(immediate_destination=" 021000021", immediate_origin="1234567890",
                          file_creation_date="261130", file_creation_time="2300", file_id_modifier="A",
                          immediate_destination_name="BANK", immediate_origin_name="CONNECTOR")
    bh = BATCH_HEADER.make(service_class_code=scc, company_name=fmt.company_name or "HEALTH CONNECT",
                           company_identification="1234567890", standard_entry_class_code=code,
                           company_entry_description=fmt.entry_description or "PREMIUM",
                           effective_entry_date="" if fmt.effective_date_blank else "261201",
                           originator_status_code="1", originating_dfi_identification=ODFI, batch_number=1)
    bc = BATCH_CONTROL.make(service_class_code=scc, company_identification="1234567890",
                            originating_dfi_identification=ODFI, batch_number=1)
    body = [FILE_HEADER.format(fh), BATCH_HEADER.format(bh)] + lines + [BATCH_CONTROL.format(bc),
                                                                          FILE_CONTROL.format(FILE_CONTROL.make())]
    return "".join(ln + "\n" for ln in body)


def _chars(line: str, col: int, text: str) -> str:
    """`text` at 1-based column `col`."""
    return line[:col - 1] + text + line[col - 1 + len(text):]


def _edit(code: str, fix, scc: str = "200", extra: list[str] | None = None) -> str:
    lines = clean_run(code)
    lines[ROW] = fix(lines[ROW])
    if extra:
        lines[ROW + 1:ROW + 1] = [e.replace("TRACE7", lines[ROW][87:94]) for e in extra]
    return _wrap(code, lines, scc)


def _set(code: str, **values):
    layout = _sec.sec_format(code).entry
    return lambda line: layout.format(layout.parse(line)._replace(**values))


_ADDENDA_05 = "705" + "PAYMENT INFO".ljust(80)
# check name -> (file, profile, field of the problem, words of its message)
CASES = {
    "field_format": (_edit("WEB", lambda ln: _chars(ln, 31, "X")), "strict", "amount", ""),
    "return_blank_fields": (_edit("WEB", lambda ln: _chars(ln, 77, "  ")), "bank", "payment_type_code", ""),
    "routing_check_digit": (_edit("WEB", lambda ln: _chars(ln, 12, str((int(ln[11]) + 1) % 10))), "strict",
                            "check_digit", "routing check digit"),
    "trace_ascending": (_edit("WEB", lambda ln: _chars(ln, 88, "0000001")), "strict", "trace_number", "ascending"),
    "trace_odfi_prefix": (_edit("WEB", lambda ln: _chars(ln, 80, "02100003")), "strict", "trace_number",
                          "ODFI identification"),
    "addenda_indicator": (_edit("WEB", lambda ln: _chars(ln, 79, "1")), "strict", "addenda_record_indicator",
                          "no addenda follow"),
    "amount_rule": (_edit("WEB", _set("WEB", amount=0)), "strict", "amount", "non-zero"),
    "transaction_code_known": (_edit("WEB", lambda ln: _chars(ln, 2, "20")), "strict", "transaction_code",
                               "unknown transaction code"),
    "forward_transaction_code": (_edit("TEL", _set("TEL", transaction_code="22")), "strict", "transaction_code",
                                 "debits only"),
    "service_class": (_edit("PPD", _set("PPD", transaction_code="22"), scc="225"), "strict", "transaction_code",
                      "does not fit service class"),
    "not_all_zeros": (_edit("ARC", _set("ARC", check_serial_number="000000000000000")), "strict",
                      "check_serial_number", "all zeros"),
    "sec_entry_checks": (_edit("COR", lambda ln: ln), "strict", "addenda_record_indicator", "addenda 98"),
    "addenda_count_field": (_edit("CTX", _set("CTX", number_of_addenda_records=1)), "strict",
                            "number_of_addenda_records", "addenda records"),
    "max_amount": (_edit("ARC", _set("ARC", amount=2_500_001)), "strict", "amount", "limited to"),
    "addenda_required": (_edit("POS", lambda ln: ln), "strict", "addenda_record_indicator", "must carry an addenda"),
    "zero_dollar_addenda": (_edit("PPD", _set("PPD", transaction_code="24", amount=0)), "strict",
                            "addenda_record_indicator", "zero-dollar"),
    "max_forward_addenda": (_edit("WEB", lambda ln: _chars(ln, 79, "1"),
                                  extra=[_ADDENDA_05 + "0001TRACE7", _ADDENDA_05 + "0002TRACE7"]),
                            "strict", "addenda_record_indicator", "at most 1 addenda"),
    "addenda_records": (_edit("WEB", lambda ln: _chars(ln, 79, "1"), extra=[_ADDENDA_05 + "0002TRACE7"]),
                        "strict", "addenda_sequence_number", "consecutive"),
}
NAMES = [c.name for c in entry_rules.ENTRY_CHECKS]


def _issues(text: str, profile: str, fast: bool):
    r = Reader(text.encode("latin-1"), profile)
    r.min_run = 2 if fast else 0
    r.fast_lanes = fast
    kinds = {type(it).__name__ for it in r}
    return [(i.line, i.columns, i.record, i.field, i.message, i.value) for i in r.issues], kinds


def test_every_check_has_a_case_and_one_entry():
    assert sorted(CASES) == sorted(NAMES)
    assert len(set(NAMES)) == len(NAMES)
    assert all(c.lanes in (entry_rules.COLUMNS, entry_rules.AMOUNT, entry_rules.LEAVE, entry_rules.ADDENDA)
               for c in entry_rules.ENTRY_CHECKS)


def test_the_clean_files_use_the_fast_lanes():
    for code in ("WEB", "PPD", "TEL"):
        issues, kinds = _issues(_wrap(code, clean_run(code)), "strict", True)
        assert "_RunEntry" in kinds
        assert not [i for i in issues if i[2] == "entry_detail" or i[3] in ("amount", "transaction_code")]


@pytest.mark.parametrize("name", NAMES)
def test_each_check_is_reached_on_both_paths(name):
    text, profile, fld, words = CASES[name]
    slow, _ = _issues(text, profile, False)
    fast, _ = _issues(text, profile, True)
    assert fast == slow
    assert any(i[3] == fld and words in i[4] for i in slow), slow


@pytest.mark.parametrize("name", [c.name for c in entry_rules.ENTRY_CHECKS if c.lanes == entry_rules.LEAVE
                                  and c.name != "transaction_code_known"])
def test_a_check_left_out_of_the_list_is_missed_by_the_fast_lanes(name, monkeypatch):
    """What the tests above guard against: with the check's `leaves` switched off (all LEAVE checks
    of its batch off: the check formats share several), the fast lanes no longer see its problem.
    (An unknown transaction code is also refused by `_run_rule` and reported per record.)"""
    text, profile, fld, words = CASES[name]
    monkeypatch.setattr(entry_rules, "_LEAVING", tuple(
        c for c in entry_rules._LEAVING if c.name == "transaction_code_known"))
    slow, _ = _issues(text, profile, False)
    fast, _ = _issues(text, profile, True)
    assert any(i[3] == fld and words in i[4] for i in slow)
    assert not any(i[3] == fld and words in i[4] for i in fast)
