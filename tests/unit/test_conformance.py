"""Conformance with the moov-io/ach corpus (../shared/conformance/moov-ach, MANIFEST.csv).

Every non-IAT file gets moov's verdict from us, or the disagreement is listed in DISAGREEMENTS with
the NACHA rule that makes us right (moov is looser than NACHA in places: nacha-other-sec-codes.md
§7), and each listed reason is checked against the issues we actually report:
- `valid`: no issue under the strict or the bank profile;
- `invalid`: rejected under both profiles, every issue located (a line and columns inside the
  record, or a file-level problem);
- `valid_with_opts` (moov needs options): no issue under the bank profile.
IAT files: every IAT batch is reported as unsupported, at its header's SEC code, without a crash.

The agreement count is printed at the end of the session (and by test_agreement_summary with -s).
"""
from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from nacha.profile import BANK, STRICT
from nacha.reader import validate_file

# The corpus: $ACHBATCH_CONFORMANCE_DIR, else ../shared/conformance/moov-ach beside the checkout.
# Absent, these tests are skipped with that reason, except under CI=true, where its absence fails.
CORPUS = Path(os.environ.get("ACHBATCH_CONFORMANCE_DIR")
              or Path(__file__).resolve().parents[3] / "shared" / "conformance" / "moov-ach")
MANIFEST = CORPUS / "MANIFEST.csv"
if not MANIFEST.is_file() and not os.environ.get("CI"):
    pytest.skip(f"conformance corpus not found at {CORPUS} (set ACHBATCH_CONFORMANCE_DIR to the moov-ach "
                "folder with MANIFEST.csv; under CI=true its absence fails)", allow_module_level=True)


def _rows() -> list[dict]:
    if not MANIFEST.is_file():
        return []  # CI: test_the_corpus_is_there fails and says where it looked
    with open(MANIFEST, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


ROWS = _rows()
NON_IAT = [r for r in ROWS if r["has_iat"] != "yes"]
IAT = [r for r in ROWS if r["has_iat"] == "yes"]


@dataclass(frozen=True)
class Disagreement:
    """Why our verdict differs from moov's, and the (record, field) of issues that prove it: each
    must be among the issues of the profile that decides (`strict` for files we accept only under
    the bank profile by design)."""

    reason: str
    marks: tuple[tuple[str, str | None], ...]


D = Disagreement

# file -> why we are right and moov is wrong (or, for `invalid` files the bank profile accepts, why
# that acceptance is a deliberate relaxation). Keys are MANIFEST paths.
DISAGREEMENTS: dict[str, Disagreement] = {
    # -- moov: valid; we reject -------------------------------------------------------------------
    "examples/testdata/atx-read.ach": D(
        "ATX entries with two Addenda 05: an acknowledgment carries at most one (NR OR185; "
        "other-sec §4.3, §7 #14: moov allows 9,999)",
        (("entry_atx", "addenda_record_indicator"),)),
    "test/ach-atx-read/atx-read.ach": D(
        "ATX entries with two Addenda 05: an acknowledgment carries at most one (NR OR185; "
        "other-sec §4.3, §7 #14: moov allows 9,999)",
        (("entry_atx", "addenda_record_indicator"),)),
    "examples/testdata/contested-return.ach": D(
        "moov writer output with three addenda 99 on one forward entry (code 22): an entry carries one "
        "return addenda (NR OR72; other-sec §3.2), a dishonored or contested return is a return of a "
        "return entry and carries a return transaction code (reference §1.5, §1.7), and the contested "
        "addenda's Date Original Entry Returned '000167' is not YYMMDD (NR2013 OR166). Structural: "
        "rejected under the bank profile too (issue 16)",
        (("entry_ppd", None), ("entry_ppd", "transaction_code"),
         ("addenda_99_contested", "date_original_entry_returned"))),
    "examples/testdata/dishonored-return.ach": D(
        "a POS batch whose dishonored returns (R68) ride on forward entries of code 27: a dishonored "
        "return answers a return entry and carries its return transaction code (26; reference §1.5, "
        "§1.7). Structural: rejected under the bank profile too (issue 16); its Effective Entry Date "
        "'000000' is only a bank-profile warning",
        (("entry_pos", "transaction_code"),)),
    "examples/testdata/enr-read.ach": D(
        "moov's sample keeps the standard layout ('Best. #1' at 55-76); an ENR entry has the Number "
        "of Addenda Records (numeric) at 55-58 and the agency name at 59-74 (NR OR85; other-sec "
        "§4.18, §7 #13)",
        (("entry_enr", "number_of_addenda_records"),)),
    "test/ach-enr-read/enr-read.ach": D(
        "moov's sample keeps the standard layout ('Best. #1' at 55-76); an ENR entry has the Number "
        "of Addenda Records (numeric) at 55-58 and the agency name at 59-74 (NR OR85; other-sec "
        "§4.18, §7 #13)",
        (("entry_enr", "number_of_addenda_records"),)),
    "examples/testdata/mte-read.ach": D(
        "the MTE Addenda 02 leaves Transaction Description (04-10) and Transaction Time (30-35) "
        "blank; both are Required (NR OR91; other-sec §5.2, §7 #9)",
        (("addenda_02_mte", "transaction_description"), ("addenda_02_mte", "transaction_time"))),
    "test/ach-mte-read/mte-read.ach": D(
        "the MTE Addenda 02 leaves Transaction Description (04-10) and Transaction Time (30-35) "
        "blank; both are Required (NR OR91; other-sec §5.2, §7 #9)",
        (("addenda_02_mte", "transaction_description"), ("addenda_02_mte", "transaction_time"))),
    "examples/testdata/xck-debit.ach": D(
        "XCK batch without the reserved Company Name 'CHECK DESTROYED' and Entry Description "
        "'NO CHECK' (NR OR106, AAP slide 7), and an item of exactly $2,500.00 where XCK items must be "
        "less than $2,500 (NR OR22 §2.5.18.2(c)); other-sec §7 #4, #19",
        (("batch_header", "company_name"), ("batch_header", "company_entry_description"),
         ("entry_xck", "amount"))),
    "test/ach-xck-read/xck-debit.ach": D(
        "XCK batch without the reserved Company Name 'CHECK DESTROYED' and Entry Description "
        "'NO CHECK' (NR OR106, AAP slide 7), and an item of exactly $2,500.00 where XCK items must be "
        "less than $2,500 (NR OR22 §2.5.18.2(c)); other-sec §7 #4, #19",
        (("batch_header", "company_name"), ("batch_header", "company_entry_description"),
         ("entry_xck", "amount"))),
    "test/testdata/long-line.ach": D(
        "records of 98 and 101 characters: a NACHA record is exactly 94 (record size 094, NR2013 "
        "OR74; reference §1.1); moov cuts them at 94. No bank sends padded records, so no relaxation",
        (("file", None),)),
    "test/testdata/txp-credit.ach": D(
        "Effective Entry Date '16    ' is not a YYMMDD date (NR2013 OR75, OR108); moov silently "
        "blanks an unparseable date",
        (("batch_header", "effective_entry_date"),)),
    "test/testdata/txp-debit.ach": D(
        "the Addenda 05 is shifted two columns (Addenda Sequence Number '0100', Entry Detail Sequence "
        "Number '00001  ', NR2013 OR81 positions 84-87, 88-94) and the File Control says 2 blocks "
        "for 10 records (NR2013 OR104; moov never checks the block count)",
        (("addenda_05", "entry_detail_sequence_number"), ("addenda_05", "addenda_sequence_number"),
         ("file_control", "block_count"))),
    "test/testdata/web-debit.ach": D(
        "Payment Type Code ' S' is neither 'R ' nor 'S ': an alphameric field is left-justified "
        "(NR2013 OR117; reference §1.1, §1.4 field 9)",
        (("entry_web", "payment_type_code"),)),
    "cmd/readACH/201805101354.ach": D(
        "every batch numbers its entries from the same trace numbers: a trace number is unique per "
        "entry within a file (NR2013 OR123; reference §1.4 field 11, issue 16); moov compares traces "
        "only within a batch",
        (("entry_ppd", "trace_number"),)),
    "test/testdata/flattenBatchesTraceNumberCollision.ach": D(
        "two batches carry the same trace numbers: a trace number is unique per entry within a file "
        "(NR2013 OR123; reference §1.4 field 11, issue 16); moov keeps the file to test that "
        "FlattenBatches renumbers the collision",
        (("entry_ppd", "trace_number"),)),
    # -- moov: valid only with options; we reject under the bank profile too ------------------------
    "cmd/writeACH/202001172118.ach": D(
        "5,000 live PPD credits (22) of amount zero: R19 (NR2013 OR70); moov needs AllowZeroEntryAmount",
        (("entry_ppd", "amount"),)),
    "test/testdata/extended-ascii.ach": D(
        "UTF-8 bytes in an Individual Name make a 95-byte record: NACHA text is ASCII 0x20 and above, "
        "94 characters a record (reference §1.1); moov needs AllowSpecialCharacters",
        (("file", None), ("entry_ppd", "individual_name"))),
    "test/testdata/ppd-debit-customTraceNumber.ach": D(
        "trace number starts 11111111, not the ODFI identification 12104288 (NR2013 OR123; "
        "reference §1.4 field 11); moov needs BypassOriginValidation",
        (("entry_ppd", "trace_number"),)),
    "test/testdata/ppd-debit-invalid-entryDetail-checkDigit.ach": D(
        "RDFI check digit 5 where the routing number computes 4 (reference §1.4 field 4, NR2013 "
        "OR81); moov needs AllowInvalidCheckDigit",
        (("entry_ppd", "check_digit"),)),
    "test/testdata/skip-validation.ach": D(
        "blank Immediate Destination (NR2013 OR74), originator status 0 outside ADV (NR2013 OR75, "
        "OR115), blank WEB Payment Type Codes (NR2013 OR117), batch numbers and traces not ascending "
        "(NR2013 OR75, OR123); moov needs SkipAll",
        (("file_header", "immediate_destination"), ("batch_header", "originator_status_code"),
         ("entry_web", "payment_type_code"), ("entry_web", "trace_number"))),
    # -- moov: invalid; the bank profile accepts by design (strict rejects) --------------------------
    "test/testdata/return-no-file-header-control.ach": D(
        "a return batch without File Header and File Control: strict rejects it; the bank profile's "
        "missing_file_envelope relaxation accepts such bank fragments on purpose (DESIGN 'Leniency')",
        (("file_header", None), ("file_control", None))),
    "test/testdata/pos-invalidReturnFile.ach": D(
        "moov rejects the return reason code R96, which is well formed: a code not in our table is a "
        "warning and its entry goes to review (DESIGN 'Leniency'); the Effective Entry Date '000000' of "
        "this return batch and the addenda 99 trace other than the entry's are warnings under the bank "
        "profile's return_field_defects on purpose (issue 16: matched by the original trace); strict "
        "rejects them",
        (("batch_header", "effective_entry_date"), ("addenda_99", "trace_number"))),
    "test/testdata/adv-noFileControl.ach": D(
        "no File Control: strict rejects it; the bank profile's missing_file_envelope relaxation "
        "accepts a missing file control on purpose (DESIGN 'Leniency')",
        (("file_control", None),)),
    "test/issues/testdata/issue751.ach": D(
        "a bank's return fragment without File Header and File Control whose returned WEB entries "
        "leave the Payment Type Code blank (NR2013 OR117 wants it copied): strict rejects it; the bank "
        "profile accepts it on purpose (DESIGN 'Leniency': missing_file_envelope, and "
        "blank_fields_on_returns for the Fiserv behaviour of moov issue 702)",
        (("file_header", None), ("file_control", None), ("entry_web", "payment_type_code"))),
}


# -- verdicts -----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _issues(path: str, profile: str) -> tuple:
    return tuple(validate_file(CORPUS / path, profile, name=path).issues)


def _located(issue, path: str) -> bool:
    """A line and columns inside a record, or a file-level problem (no line)."""
    if issue.line is None:
        return issue.columns is None
    if issue.line < 1:
        return False
    if issue.columns is not None:
        start, end = issue.columns
        if not 1 <= start <= end:
            return False
    return str(issue).startswith(f"{path}:{issue.line}")


def _agrees(row: dict) -> tuple[bool, str, str]:
    """(agree, what happened, profile whose issues show why)."""
    path, expect = row["file"], row["expect"]
    strict, bank = _issues(path, STRICT.name), _issues(path, BANK.name)
    if expect == "valid":
        ok = not strict or not bank
        return ok, f"strict: {len(strict)} issue(s), bank: {len(bank)}: {[str(i) for i in bank[:3]]}", "bank"
    if expect == "invalid":
        ok = bool(strict) and bool(bank)
        return ok, f"strict: {len(strict)} issue(s), bank: {len(bank)}", "strict" if not bank else "bank"
    if expect == "valid_with_opts":
        return not bank, f"bank: {len(bank)} issue(s): {[str(i) for i in bank[:3]]}", "bank"
    raise AssertionError(f"{path}: unknown expectation {expect!r}")


def _summary() -> dict:
    counts: dict[str, list[int]] = {}
    for row in NON_IAT:
        ok = _agrees(row)[0]
        c = counts.setdefault(row["expect"], [0, 0])
        c[0 if ok else 1] += 1
    agree = sum(c[0] for c in counts.values())
    documented = sum(1 for row in NON_IAT if not _agrees(row)[0] and row["file"] in DISAGREEMENTS)
    return {"agree": agree, "total": len(NON_IAT), "documented": documented,
            "undocumented": len(NON_IAT) - agree - documented, "by_expect": counts}


def _summary_line() -> str:
    s = _summary()
    parts = ", ".join(f"{k} {a}/{a + d}" for k, (a, d) in sorted(s["by_expect"].items()))
    return (f"conformance: {s['agree']}/{s['total']} agree; {s['documented']} documented disagreements; "
            f"{s['undocumented']} undocumented ({parts})")


class _Report:
    """Prints the agreement count in pytest's terminal summary, at the end of the session."""

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.write_line(_summary_line())


@pytest.fixture(scope="module", autouse=True)
def _session_report(request):
    pm = request.config.pluginmanager
    if not pm.has_plugin("achbatch-conformance-report"):
        pm.register(_Report(), "achbatch-conformance-report")
    yield


# -- tests --------------------------------------------------------------------------------------------
def test_the_corpus_is_there():
    assert MANIFEST.is_file(), f"conformance corpus missing at {CORPUS}"
    assert len(ROWS) == 150
    assert NON_IAT and IAT


def test_every_documented_disagreement_names_a_non_iat_file_of_the_manifest():
    files = {r["file"] for r in NON_IAT}
    assert set(DISAGREEMENTS) <= files, set(DISAGREEMENTS) - files


@pytest.mark.parametrize("row", NON_IAT, ids=[r["file"] for r in NON_IAT])
def test_moov_verdict_or_a_documented_disagreement(row):
    path, expect = row["file"], row["expect"]
    agree, what, deciding = _agrees(row)
    if expect == "invalid":
        # Whatever the bank profile does, strict rejects every invalid file, saying where.
        strict = _issues(path, STRICT.name)
        assert strict, f"{path}: moov rejects it, strict accepts it"
        assert all(_located(i, path) for i in strict), [str(i) for i in strict if not _located(i, path)]
        for i in strict:
            if i.columns is not None and i.record != "file":
                assert i.columns[1] <= 94, str(i)  # a field's columns, inside the record
    if agree:
        assert path not in DISAGREEMENTS, f"{path} agrees with moov now: remove it from DISAGREEMENTS"
        if expect == "invalid":
            bank = _issues(path, BANK.name)
            assert all(_located(i, path) for i in bank), [str(i) for i in bank if not _located(i, path)]
        return
    assert path in DISAGREEMENTS, f"undocumented disagreement with moov ({expect}): {what}"
    d = DISAGREEMENTS[path]
    assert any(k in d.reason for k in ("NR", "reference", "other-sec", "DESIGN")), f"{path}: cite the rule"
    issues = _issues(path, deciding) if expect != "invalid" else _issues(path, STRICT.name)
    seen = {(i.record, i.field) for i in issues}
    missing = [m for m in d.marks if m not in seen]
    assert not missing, f"{path}: documented reason no longer shows in the issues: {missing}; got {sorted(seen, key=str)}"


@pytest.mark.parametrize("row", IAT, ids=[r["file"] for r in IAT])
def test_iat_batches_are_reported_unsupported_without_a_crash(row):
    path = row["file"]
    for profile in (STRICT.name, BANK.name):
        issues = _issues(path, profile)  # reading must not raise
        assert issues, f"{path}: an IAT file cannot be valid while IAT is not supported"
        assert all(_located(i, path) for i in issues), [str(i) for i in issues if not _located(i, path)]
    bank = _issues(path, BANK.name)
    unsupported = [i for i in bank if i.field == "standard_entry_class_code" and "not supported" in i.message]
    for i in unsupported:
        assert i.line is not None and i.columns == (51, 53) and i.record == "batch_header", str(i)
    if row["expect"] == "valid":
        # moov reads it cleanly: the only thing we say is that each IAT batch is not supported.
        assert bank and len(unsupported) == len(bank), [str(i) for i in bank]
        headers = [line for line in (CORPUS / path).read_bytes().decode("latin-1").splitlines()
                   if line.startswith("5")]
        assert len(unsupported) == len(headers)


def test_agreement_summary():
    s = _summary()
    print(_summary_line())
    assert s["undocumented"] == 0, _summary_line()
    assert s["agree"] + s["documented"] == s["total"]
