"""Tie-out to the bank's BAI2 statement (issue 15): the sample statements against their hand-written
expected results, two files of equal totals the same day, a return file's debit, a malformed file
rejected whole with its line and reason and nothing recorded, the nightly step fetching a statement
once and never processing it twice, and the `bai2` package's gaps this code covers."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from batch.collect.bank_statement import reconcile_file
from batch.collect.returns import process_return_file
from batch.rules.bank_statement import (
    Expected, StatementDetail, StatementError, check_type_codes, read_statement, tie_out, type_code_facts,
)
from batch.run.nightly import run_pipeline
from batch.store.models import InboundFile, NachaFile, ReturnFile, ReviewItem, StatementFile, StatementLine
from jobs.exitcodes import EXIT_CODES
from test_nightly_support import SAMPLES, Folder

BAI2 = SAMPLES / "bai2"
PROCESSED = date(2026, 1, 21)


def _setup(sessions, keyring) -> dict[str, int]:
    """debits-web-ppd-tel.ach as sent (its facts from sample_files/README.md) and returns.ach applied."""
    with sessions() as s, s.begin():
        f = NachaFile(file_date=date(2026, 1, 16), file_id_modifier="A", file_name="debits-web-ppd-tel.ach",
                      sha256="0" * 64, batch_count=4, entry_count=10, total_debit_cents=412773, total_credit_cents=0,
                      state="sent")
        s.add(f)
        s.flush()
        fid = f.id
    out = process_return_file(sessions, keyring, SAMPLES / "returns.ach", date(2026, 1, 22))
    assert out.status == "applied"
    return {"debits-web-ppd-tel.ach": fid, "returns.ach": out.return_file_id}


def _count(sessions, model, *where) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_a_return_file_records_what_the_bank_debits_and_when(sessions, keyring):
    ids = _setup(sessions, keyring)
    with sessions() as s:
        rf = s.get(ReturnFile, ids["returns.ach"])
        # sample_files/README.md: debits (returned) $1,620.85, settlement date 020, created 2026-01-22
        assert (rf.return_total_cents, rf.settlement_date) == (162085, date(2026, 1, 20))


@pytest.mark.parametrize("name", ["statement-matched", "statement-missing-settlement", "statement-unknown-posting"])
def test_sample_statements_tie_out_as_expected(sessions, keyring, name):
    ids = _setup(sessions, keyring)
    want = json.loads((BAI2 / f"{name}.expected.json").read_text())
    out = reconcile_file(sessions, BAI2 / f"{name}.bai", PROCESSED)
    assert out.status == "reconciled" and out.as_of.isoformat() == want["as_of"]
    t = out.tie
    assert [{"line": m.detail.line, "type_code": m.detail.type_code, "amount_cents": m.detail.amount_cents,
             "kind": m.expected.kind, "name": m.expected.name, "basis": m.basis} for m in t.matched] == want["matched"]
    assert [{"kind": e.kind, "name": e.name, "settles_on": e.settles_on.isoformat(), "amount_cents": e.amount_cents}
            for e in t.missing] == want["missing"]
    assert [{"line": d.line, "type_code": d.type_code, "direction": d.direction, "amount_cents": d.amount_cents}
            for d in t.unexplained] == want["unexplained"]
    with sessions() as s:
        lines = {x.line: x for x in s.scalars(select(StatementLine))}
        assert set(lines).isdisjoint(want["not_ours"])  # other type codes are not kept
        for m in want["matched"]:
            x = lines[m["line"]]
            assert (x.nacha_file_id if m["kind"] == "nacha_file" else x.return_file_id) == ids[m["name"]]
            assert x.account_last4 == "6789"  # never the whole account number
        items = s.scalars(select(ReviewItem).where(ReviewItem.kind == "bank_unmatched").order_by(ReviewItem.id)).all()
        assert len(items) == len(want["missing"]) + len(want["unexplained"])
        assert all(i.subject == "statement_line" and i.status == "open" for i in items)
        assert sorted((i.amount_cents, i.expected_amount_cents) for i in items) == sorted(
            [(0, e["amount_cents"]) for e in want["missing"]] + [(u["amount_cents"], None) for u in want["unexplained"]])
    # the same bytes again: processed once
    again = reconcile_file(sessions, BAI2 / f"{name}.bai", PROCESSED)
    assert again.status == "duplicate" and _count(sessions, StatementFile) == 1
    assert _count(sessions, ReviewItem, ReviewItem.kind == "bank_unmatched") == len(items)


def _detail(line: int, cents: int, ref: str = "", code: str = "166") -> StatementDetail:
    return StatementDetail(line, code, "credit", cents, f"B{line}", ref, "ACH SETTLEMENT")


def test_two_files_the_same_day_of_equal_totals():
    day = date(2026, 1, 20)
    a = Expected("nacha_file", 1, "ACH-20260116-A.ach", day, 50000, ("260116A", "ACH-20260116-A.ach"))
    b = Expected("nacha_file", 2, "ACH-20260116-B.ach", day, 50000, ("260116B", "ACH-20260116-B.ach"))
    # each line names its file: the reference decides, whatever the order
    t = tie_out([(day, _detail(4, 50000, "260116B")), (day, _detail(5, 50000, "260116A"))], [a, b], {day},
                ("166",), ("468",))
    assert [(m.detail.line, m.expected.ref_id, m.basis) for m in t.matched] == [
        (4, 2, "amount, date and reference"), (5, 1, "amount, date and reference")]
    assert t.all_matched
    # no reference: both are matched, one each, in order
    t = tie_out([(day, _detail(4, 50000)), (day, _detail(5, 50000))], [a, b], {day}, ("166",), ("468",))
    assert sorted((m.detail.line, m.expected.ref_id) for m in t.matched) == [(4, 1), (5, 2)]
    assert {m.basis for m in t.matched} == {"amount and date"} and t.all_matched
    # only one posted: one matched, the other expected and not posted
    t = tie_out([(day, _detail(4, 50000))], [a, b], {day}, ("166",), ("468",))
    assert len(t.matched) == 1 and [e.ref_id for e in t.missing] == [2] and not t.unexplained
    # a line naming file A with another amount explains neither
    t = tie_out([(day, _detail(4, 50000)), (day, _detail(5, 49999, "260116A"))], [a, b], {day}, ("166",), ("468",))
    assert [(m.detail.line, m.expected.ref_id) for m in t.matched] == [(4, 1)]
    assert [d.line for d in t.unexplained] == [5] and [e.ref_id for e in t.missing] == [2]
    # a settlement on a date the statement does not cover is neither missing nor matched
    t = tie_out([], [a], {date(2026, 1, 21)}, ("166",), ("468",))
    assert t.all_matched and not t.matched


def test_a_return_files_debit_matches_only_a_return_settlement_code():
    day = date(2026, 1, 20)
    r = Expected("return_file", 7, "returns.ach", day, 162085, ("returns.ach",))
    t = tie_out([(day, _detail(4, 162085, code="468"))], [r], {day}, ("166",), ("468",))
    assert [(m.expected.ref_id, m.detail.line) for m in t.matched] == [(7, 4)]
    # the same amount as a credit explains nothing; the debit stays expected
    t = tie_out([(day, _detail(4, 162085, code="166"))], [r], {day}, ("166",), ("468",))
    assert [d.line for d in t.unexplained] == [4] and [e.ref_id for e in t.missing] == [7]
    # a summary or unmapped code is not looked at (it would count the details twice)
    t = tie_out([(day, _detail(4, 162085, code="556"))], [r], {day}, ("166",), ("468",))
    assert t.ignored == 1 and [e.ref_id for e in t.missing] == [7]


MATCHED = (BAI2 / "statement-matched.bai").read_text()
MALFORMED = [
    # (the change, line, words of the reason)
    (MATCHED.replace("49,1699716,5/", "49,1699717,5/"), 7, "account control total"),
    (MATCHED.replace("16,475,25000,", "16,475,2x000,"), 6, "2x000"),
    (MATCHED.replace("99,1699716,1,9/", "99,1699716,1,10/"), 9, "number of records"),
    (MATCHED + "16,166,100,0,,,/\n", 10, "after the file trailer"),  # the package stops reading at 99
    # the package takes the sign (and the control totals add it up: 1699716 - 2 x 162085)
    (MATCHED.replace("16,468,162085,", "16,468,-162085,").replace("1699716", "1375546"), 5, "unsigned"),
    (MATCHED.replace("02,1987654321,021000021,1,260120,2400,USD,2/", "02,1987654321,021000021,1,260120,2400,CAD,2/"),
     2, "only USD"),
    (MATCHED.replace("16,475,", "17,475,"), 6, "not a BAI2 record"),
    (MATCHED.replace("\n16,468", "\n\n16,468"), 5, "empty line"),
]


@pytest.mark.parametrize("text,line,words", MALFORMED)
def test_malformed_statement_is_read_with_its_line_and_reason(text, line, words):
    with pytest.raises(StatementError) as e:
        read_statement(text.encode(), "bad.bai")
    assert e.value.line == line and words in e.value.reason, str(e.value)


def test_malformed_statement_is_rejected_whole_and_nothing_recorded(tmp_path, db_url):
    f = Folder(tmp_path, db_url=db_url)
    f.setup(load=False)
    bad = tmp_path / "bad.bai"
    bad.write_text(MATCHED.replace("49,1699716,5/", "49,1699717,5/"))
    good = BAI2 / "statement-unknown-posting.bai"
    r = f.run("reconcile", "bank", str(good), str(bad), "--date", "2026-01-21", "--json")
    assert r.returncode == 1, r.stderr
    files = {Path(x["file"]).name: x for x in json.loads(r.stdout)["files"]}
    assert files["bad.bai"]["status"] == "rejected" and files["bad.bai"]["line"] == 7
    assert "bad.bai:7: Invalid account control total" in files["bad.bai"]["error"]
    assert files["statement-unknown-posting.bai"]["status"] == "reconciled"
    with f.sessions() as sessions:
        with sessions() as s:
            assert [x.file_name for x in s.scalars(select(StatementFile))] == ["statement-unknown-posting.bai"]
            names = {x.statement_file_id for x in s.scalars(select(StatementLine))}
            assert len(names) == 1  # only the good file's lines
    # text output names the line and the reason too
    r = f.run("reconcile", "bank", str(bad))
    assert r.returncode == 1 and "bad.bai:7: Invalid account control total" in r.stdout


def test_nightly_step_fetches_a_statement_once_and_never_processes_it_twice(tmp_path, db_url):
    f = Folder(tmp_path, db_url=db_url, bank__statements="*.bai")
    keyring = f.setup(load=False)
    settings = f.settings
    outgoing = settings.bank_folder / settings.bank.inbound_dir
    outgoing.mkdir(parents=True, exist_ok=True)
    (outgoing / "STMT-0120.bai").write_bytes((BAI2 / "statement-matched.bai").read_bytes())
    (outgoing / "returns.ach").write_bytes((SAMPLES / "returns.ach").read_bytes())
    with f.sessions() as sessions:
        with sessions() as s, s.begin():
            s.add(NachaFile(file_date=date(2026, 1, 16), file_id_modifier="A", file_name="debits-web-ppd-tel.ach",
                            sha256="0" * 64, batch_count=4, entry_count=10, total_debit_cents=412773,
                            total_credit_cents=0, state="sent"))
        r = run_pipeline(settings, sessions, keyring, date(2026, 1, 22), kind="returns", exit_codes=EXIT_CODES)
        step = {x.step: x for x in r.steps}
        assert step["bank_statement"].status == "done", step["bank_statement"]
        assert step["bank_statement"].counts["statements"] == 1
        assert step["bank_statement"].counts["matched"] == 2 and step["bank_statement"].counts["missing"] == 0
        # the returns fetch left the statement alone; the statement fetch took only it
        with sessions() as s:
            rows = {x.remote_name: x for x in s.scalars(select(InboundFile))}
        assert {n: (x.kind, x.state) for n, x in rows.items()} == {
            "returns.ach": ("returns", "processed"), "STMT-0120.bai": ("statement", "processed")}
        assert _count(sessions, ReturnFile) == 1  # the statement was never read as a return file
        # the next runs: not fetched again, not processed again, even re-posted under another name
        (outgoing / "STMT-0120-again.bai").write_bytes((BAI2 / "statement-matched.bai").read_bytes())
        for day in (date(2026, 1, 23), date(2026, 1, 26)):
            r = run_pipeline(settings, sessions, keyring, day, kind="returns", exit_codes=EXIT_CODES)
            step = {x.step: x for x in r.steps}
            assert step["bank_statement"].status == "done"
            assert step["bank_statement"].counts["statements"] == 0, step["bank_statement"].note
        with sessions() as s:
            again = s.scalars(select(InboundFile).where(InboundFile.remote_name == "STMT-0120-again.bai")).one()
            assert (again.kind, again.state) == ("statement", "duplicate")
        assert _count(sessions, StatementFile) == 1 and _count(sessions, StatementLine) == 2


def test_statement_patterns_and_type_codes_are_checked():
    from batch.config import BankSettings

    assert BankSettings().statement_credit_codes == ["165", "166", "169"]
    assert BankSettings().statement_return_codes == ["468"]
    with pytest.raises(ValueError, match="summary code"):
        BankSettings(statement_credit_codes=["167"])  # ACH Settlement Credits: the total of the details
    with pytest.raises(ValueError, match="summary code"):
        BankSettings(statement_return_codes=["556"])  # Total ACH Return Items
    with pytest.raises(ValueError, match="not a debit code"):
        BankSettings(statement_return_codes=["266"])  # Return Item is a credit
    with pytest.raises(ValueError, match="must differ"):
        BankSettings(inbound_pattern="*.txt", statements="*.txt")


def test_the_packages_type_table_against_the_specification():
    """The BAI2 specification (Appendix A): 165, 166, 168, 169 credit details, 167 a credit summary,
    466, 468, 469 debit details, 467 a debit summary, 557 a debit detail, 556 a debit summary. The
    `bai2` package has 168 and 169 as summaries: corrected here."""
    from bai2.constants import TypeCodes

    assert TypeCodes["168"].level.value == "summary" and TypeCodes["169"].level.value == "summary"  # its table
    spec = {"165": ("credit", "detail"), "166": ("credit", "detail"), "167": ("credit", "summary"),
            "168": ("credit", "detail"), "169": ("credit", "detail"), "466": ("debit", "detail"),
            "467": ("debit", "summary"), "468": ("debit", "detail"), "469": ("debit", "detail"),
            "556": ("debit", "summary"), "557": ("debit", "detail")}
    assert {c: type_code_facts(c)[:2] for c in spec} == spec
    assert check_type_codes(["169"], "credit") == ["169"]


def test_reconciliation_report_has_a_bank_statement_section(sessions, keyring, tmp_path):
    from openpyxl import load_workbook

    from batch.report.reports import reconciliation_report, write_report

    _setup(sessions, keyring)
    reconcile_file(sessions, BAI2 / "statement-unknown-posting.bai", PROCESSED)
    report = reconciliation_report(sessions, None, PROCESSED)
    bank = dict(report.extra)["Bank statement"]
    assert [(r["status"], r["line"], r["amount"], r["ours"]) for r in bank.to_dict("records")] == [
        ("matched", "4", 412773, "debits-web-ppd-tel.ach"), ("matched", "5", 162085, "returns.ach"),
        ("posted, unexplained", "7", 5000, "")]
    assert "bank statement: 1 posting nothing of ours explains ($50.00)" in report.warnings
    assert any(" open: a person must decide them" in w for w in report.warnings)  # returns.ach's unmatched entries, the $50
    assert ("Bank statement: posted, unexplained", "1 ($50.00)") in report.summary
    html = write_report(report, "html", tmp_path / "r.html").read_text()
    assert "Bank statement" in html and "No threshold crossed" not in html
    csv_main = write_report(report, "csv", tmp_path / "r.csv").read_text().splitlines()
    part = (tmp_path / "r.bank.csv").read_text().splitlines()
    assert csv_main[0].startswith("file,batch,") and part[0] == ("status,as_of,statement,line,type_code,direction,"
                                                                 "amount,expected_amount,ours,basis")
    assert part[1:] == ["matched,2026-01-20,statement-unknown-posting.bai,4,166,credit,4127.73,4127.73,"
                        "debits-web-ppd-tel.ach,\"amount, date and reference\"",
                        "matched,2026-01-20,statement-unknown-posting.bai,5,468,debit,1620.85,1620.85,returns.ach,"
                        "amount and date",
                        "\"posted, unexplained\",2026-01-20,statement-unknown-posting.bai,7,166,credit,50.00,,,"]
    wb = load_workbook(write_report(report, "xlsx", tmp_path / "r.xlsx"))
    assert "Bank statement" in wb.sheetnames and wb["Bank statement"].max_row == 4
