"""Reports (batch/report/reports.py, `achbatch report`): the contract CSV columns, integer-cent tables,
reconciliation tied to the NACHA control records, rolling return rates against NACHA's thresholds
(exact fractions), the inline SVG chart, xlsx, and account numbers never shown."""
from __future__ import annotations

import csv
import io
import re
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import select, update

from batch.collect.coverage import assess_coverage
from batch.store.models import FileEntry, NachaFile
from batch.report.reports import (
    COLUMNS,
    ReturnRate,
    _percent,
    coverage_report,
    dollars,
    heading,
    reconciliation_report,
    render_csv,
    render_html,
    return_rates,
    returns_chart_svg,
    returns_report,
    write_report,
)
from jobs.cli import cli

from test_returns import RETURN_DAY, World, cli_env  # noqa: F401  (fixture)

# DESIGN.md's columns, extended at the end only: member_name last where a member is named.
CONTRACT = {
    "returns": "trace_number,member_id,plan_id,amount,return_code,return_title,category,returned_on,disposition,"
               "member_name",
    "coverage": "member_id,plan_id,status,reason,months_owed,amount_owed,deadline,member_name",
    "reconciliation": "file,batch,effective_date,entries,debits,returned_entries,returned_amount,net",
}


def test_contract_columns():
    assert {k: ",".join(v) for k, v in COLUMNS.items()} == CONTRACT


@pytest.mark.parametrize("cents, text", [(0, "0.00"), (5, "0.05"), (12345, "123.45"), (-100, "-1.00"),
                                         (99_999_999_99, "99999999.99")])
def test_dollars(cents, text):
    assert dollars(cents) == text


@pytest.mark.parametrize("rate, text", [(Fraction(5, 1000), "0.50%"), (Fraction(1, 3), "33.33%"),
                                        (Fraction(2, 3), "66.67%"), (Fraction(1, 200_000), "0.00%"),
                                        (Fraction(1, 20_000), "0.01%")])
def test_percent_is_exact(rate, text):
    assert _percent(rate) == text


def test_thresholds_are_crossed_only_above_them():
    half = Fraction(5, 1000)
    assert not ReturnRate("unauthorized", 1, 200, half).crossed  # exactly 0.5%
    assert ReturnRate("unauthorized", 2, 200, half).crossed
    assert not ReturnRate("overall", 0, 0, Fraction(15, 100)).crossed


@pytest.fixture
def book(sessions, keyring, tmp_path):
    """10 payments originated; R01, R02, R10 and R03 returns; coverage assessed."""
    w = World(sessions, keyring, tmp_path)
    members = [w.member(amount=10000 + i * 111, channel="portal" if i % 3 == 0 else "autopay") for i in range(10)]
    o = w.originate()
    w.process(w.bank.returns([(o[members[0]], "R01"), (o[members[1]], "R02"), (o[members[2]], "R10")],
                             RETURN_DAY))
    w.process(w.bank.returns([(o[members[3]], "R03")], date(2026, 12, 4), modifier="B"), d=date(2026, 12, 4))
    assess_coverage(sessions, date(2026, 12, 24))
    return w, members, o


def _csv(report):
    return list(csv.reader(io.StringIO(render_csv(report))))


def test_reconciliation_ties_to_the_control_records(book, sessions, keyring):
    w, members, o = book
    rep = reconciliation_report(sessions, keyring, date(2026, 12, 10))
    assert not rep.warnings
    assert all(str(rep.table[c].dtype) == "Int64" for c in ("batch", "entries", "debits", "returned_entries",
                                                              "returned_amount", "net"))
    rows = _csv(rep)
    assert ",".join(rows[0]) == CONTRACT["reconciliation"]
    with sessions() as s:
        f = s.scalars(select(NachaFile)).one()
    body = rows[1:]
    assert {r[0] for r in body} == {f.file_name} and all(r[2] == "2026-12-02" for r in body)
    assert sum(int(r[3]) for r in body) == 10
    total = sum(Decimal(r[4]) for r in body)
    assert total * 100 == f.total_debit_cents == sum(o[m].entry.amount for m in members)
    returned = sum(Decimal(r[6]) for r in body)
    assert returned * 100 == sum(o[m].entry.amount for m in members[:4])
    assert sum(int(r[5]) for r in body) == 4
    assert all(Decimal(r[7]) == Decimal(r[4]) - Decimal(r[6]) for r in body)
    checks = rep.extra[0][1]
    assert list(checks["ties"]) == ["yes"] * len(body)
    # returns processed after the report date are not counted yet
    early = reconciliation_report(sessions, keyring, RETURN_DAY)
    assert int(early.table["returned_entries"].sum()) == 3


def test_reconciliation_warns_when_a_batch_does_not_tie(book, sessions, keyring):
    with sessions() as s, s.begin():
        fe = s.scalars(select(FileEntry).order_by(FileEntry.id)).first()
        s.execute(update(FileEntry).where(FileEntry.id == fe.id).values(amount_cents=fe.amount_cents + 1))
    rep = reconciliation_report(sessions, keyring, date(2026, 12, 10))
    assert any("batch control says" in w for w in rep.warnings)
    assert "NO" in list(rep.extra[0][1]["ties"])


def test_returns_report_rates_and_warnings(book, sessions):
    w, members, o = book
    rep = returns_report(sessions, date(2026, 12, 10))
    rows = _csv(rep)
    assert ",".join(rows[0]) == CONTRACT["returns"]
    body = {r[4]: r for r in rows[1:]}
    assert set(body) == {"R01", "R02", "R10", "R03"}
    r01 = body["R01"]
    assert r01[0] == o[members[0]].trace and r01[1] == members[0] and r01[2] == "HLTH-1"
    assert r01[3] == "100.00" and r01[5] == "Insufficient Funds" and r01[6] == "other" and r01[7] == "2026-12-03"
    assert r01[8] == "retry" and r01[9] == "Member 1"
    assert body["R02"][6] == "administrative" and body["R10"][6] == "unauthorized"
    rates = {r.category: r for r in return_rates(sessions, date(2026, 12, 10))}
    assert (rates["unauthorized"].returns, rates["unauthorized"].entries) == (1, 10)
    assert (rates["administrative"].returns, rates["overall"].returns) == (2, 4)
    assert len(rep.warnings) == 3 and all(w.startswith("WARNING") for w in rep.warnings)
    assert "unauthorized return rate 10.00%" in rep.warnings[0] and "0.50%" in rep.warnings[0]
    # 60 days on, the entries fall out of the window
    later = returns_report(sessions, date(2027, 2, 15))
    assert len(later.table) == 0 and later.warnings == []


def test_returns_chart_is_an_inline_svg_by_code_and_day():
    svg = returns_chart_svg({(date(2026, 12, 3), "R01"): 2, (date(2026, 12, 3), "R10"): 1,
                             (date(2026, 12, 4), "R01"): 1}, date(2026, 12, 1), date(2026, 12, 7))
    assert svg.startswith("<svg") and "<script" not in svg and "href" not in svg
    bars = re.findall(r'<rect class="bar" data-code="(R\d\d)" data-day="([0-9-]+)" data-count="(\d+)"', svg)
    assert sorted(bars) == [("R01", "2026-12-03", "2"), ("R01", "2026-12-04", "1"), ("R10", "2026-12-03", "1")]
    heights = dict(((c, d), int(h)) for c, d, h in re.findall(
        r'data-code="(R\d\d)" data-day="([0-9-]+)" data-count="\d+" x="\d+" y="\d+" width="\d+" height="(\d+)"', svg))
    assert heights[("R01", "2026-12-03")] == 2 * heights[("R01", "2026-12-04")]
    assert svg.count('class="legend"') == 2


def test_coverage_report_lists_policies_at_risk(book, sessions):
    w, members, o = book
    # The R01's re-presentment goes out on its day, 2026-12-07 (settles 12-08, clears 12-10): a
    # re-presentment only cures a returned premium once it has cleared, one never sent never does.
    assert set(w.originate(date(2026, 12, 7))) == {members[0]}
    assess_coverage(sessions, date(2026, 12, 24))
    rep = coverage_report(sessions, date(2026, 12, 24))
    rows = _csv(rep)
    assert ",".join(rows[0]) == CONTRACT["coverage"]
    body = {r[0]: r for r in rows[1:]}
    # January's premiums (due 2026-12-23) returned R02, R10, R03 are delinquent; the R01 was
    # re-presented on 2026-12-07 and cleared before the due date, so that member is in good standing.
    assert set(body) == set(members[1:4])
    for m, code in zip(members[1:4], ("R02", "R10", "R03")):
        r = body[m]
        # (APTC, no month of 2027 paid in full before January: no grace period, 45 CFR 156.270(d))
        assert (r[1], r[2], r[4], r[6]) == ("HLTH-1", "termination_pending", "1", "2027-01-23")
        assert r[7] == f"Member {members.index(m) + 1}"  # member_name, the last column
        assert f"returned ({code}" in r[3] and r[5] == dollars(o[m].entry.amount)
    assert dict(zip(rep.extra[0][1]["status"], rep.extra[0][1]["count"]))["ok"] == 7


def _standing_rows(rep):
    """The coverage report's policies at risk: (member, plan, status, reason, months, cents, deadline)."""
    t = rep.table
    return sorted(zip(t["member_id"], t["plan_id"], t["status"], t["reason"], [int(x) for x in t["months_owed"]],
                      [int(x) for x in t["amount_owed"]], t["deadline"]))


def _current_flags(sessions):
    """What `coverage assess` stored: the current flag of each policy at risk, as the report shows them."""
    from batch.store.models import CoverageFlag

    with sessions() as s:
        flags = s.scalars(select(CoverageFlag).where(CoverageFlag.current_key.is_not(None)
                                                     & (CoverageFlag.status != "ok"))).all()
        return sorted((f.member_id, f.plan_id, f.status, f.reason, f.months_owed, f.amount_owed_cents, f.deadline)
                      for f in flags)


def _flag_count(sessions):
    from sqlalchemy import func

    from batch.store.models import CoverageFlag

    with sessions() as s:
        return s.scalar(select(func.count()).select_from(CoverageFlag))


def test_the_coverage_report_agrees_with_assess_for_a_date_never_assessed(book, sessions):
    """`report coverage --date D` and `coverage assess --date D` agree (issue 14): the report once
    showed the flags stored as of D, so for a date never assessed it showed the earlier assessment's
    standing (or nothing at all). Now it computes D's standing as assess does, and writes nothing."""
    w, members, o = book
    assess_coverage(sessions, date(2026, 12, 24))  # a later date assessed first
    stored = _flag_count(sessions)
    for day in (date(2026, 12, 1), date(2026, 12, 10), date(2027, 1, 30)):  # none of them assessed
        rep = coverage_report(sessions, day)
        assert _flag_count(sessions) == stored  # the report writes nothing
        assess_coverage(sessions, day)
        assert _standing_rows(rep) == _current_flags(sessions), day
        stored = _flag_count(sessions)
    # 2026-12-10: the returns of 2026-12-03 leave January's premiums at risk before their due date
    assert {r[2] for r in _standing_rows(coverage_report(sessions, date(2026, 12, 10)))} == {"at_risk"}


def test_the_coverage_report_agrees_with_assess_after_assessments_out_of_date_order(book, sessions):
    w, members, o = book
    for day in (date(2027, 1, 30), date(2026, 12, 10), date(2026, 12, 24)):
        assess_coverage(sessions, day)
    # the last assessment was of 2026-12-24; the report for 2027-01-30 is 2027-01-30's standing
    # (not the stored flags of the 2027-01-30 assessment superseded since, nor the 12-24 ones)
    for day in (date(2027, 1, 30), date(2026, 12, 10)):
        rep = coverage_report(sessions, day)
        assess_coverage(sessions, day)
        assert _standing_rows(rep) == _current_flags(sessions), day
    late = {r[2] for r in _standing_rows(coverage_report(sessions, date(2027, 1, 30)))}
    assert late and late != {"at_risk"}  # a month later the returned premiums are delinquent


def test_report_coverage_and_coverage_assess_agree_on_the_command_line(cli_env, sessions, tmp_path, monkeypatch):
    """Both commands take [coverage] from the settings (here no grace period for subsidized members,
    so a returned January premium is termination_pending after its due date, not past_due)."""
    w = World(sessions, cli_env, tmp_path)
    members = [w.member(amount=10000 + i, channel="portal") for i in range(3)]
    o = w.originate()
    w.process(w.bank.returns([(o[members[0]], "R02"), (o[members[1]], "R01")], RETURN_DAY))
    monkeypatch.setenv("ACHBATCH_COVERAGE__GRACE_MONTHS_SUBSIDIZED", "0")
    run = CliRunner()
    for day in ("2026-12-30", "2026-12-10"):  # never assessed, then an earlier date after a later one
        r = run.invoke(cli, ["report", "coverage", "--date", day, "--format", "csv", "--out", "-"])
        assert r.exit_code == 0, r.output
        shown = [(row[0], row[2], row[4], row[5], row[6]) for row in csv.reader(io.StringIO(r.stdout))][1:]
        r = run.invoke(cli, ["coverage", "assess", "--date", day])
        assert r.exit_code == 0, r.output
        stored = [(f[0], f[2], str(f[4]), dollars(f[5]), f[6].isoformat() if f[6] else "")
                  for f in _current_flags(sessions)]
        assert sorted(shown) == stored and stored, day
        if day == "2026-12-30":
            assert {f[1] for f in stored} == {"termination_pending"}


def _bill(s, member, plan, month, cents, *, binder=False):
    from batch.rules.premium_calendar import due_date
    from batch.store.models import Premium

    s.add(Premium(member_id=member, member_name=f"Name {member}", plan_id=plan, coverage_month=month,
                  amount_due_cents=cents, subsidy="aptc", binder=binder, due_date=due_date(month)))


def test_coverage_report_shows_at_risk_after_the_delinquent(sessions, keyring, tmp_path):
    day = date(2026, 12, 24)
    feb = date(2027, 2, 1)
    w = World(sessions, keyring, tmp_path)
    # January (due 12-23) returned: termination_pending (APTC, but no month of 2027 paid in full
    # before it: no grace period, 45 CFR 156.270(d))
    m3 = w.member(channel="portal", amount=5000)
    m4 = w.member(channel="portal", amount=7000, binder=True)  # the binder returned: coverage never started
    m2 = w.member(channel="portal", amount=10000, month=feb)  # February (due 2027-01-23) returned: at_risk
    m5 = w.member(channel="portal", amount=4000, month=feb)
    m1 = w.member(channel="portal", amount=9000)  # paid, cleared: ok
    o = w.originate()
    w.process(w.bank.returns([(o[m], "R02") for m in (m3, m4, m2, m5)], RETURN_DAY))
    rep = coverage_report(sessions, day)
    body = _csv(rep)[1:]
    assert [(r[0], r[2]) for r in body] == [(m3, "termination_pending"), (m4, "not_started"), (m2, "at_risk"),
                                           (m5, "at_risk")]
    assert m1 not in {r[0] for r in body}
    by_status = rep.extra[0][1]
    assert list(by_status["status"]) == ["at_risk", "not_started", "past_due", "termination_pending", "terminated",
                                         "pending_activation", "ok"]
    assert dict(zip(by_status["status"], by_status["amount_owed"]))["at_risk"] == 14000
    assert dict(zip(by_status["status"], by_status["count"]))["at_risk"] == 2
    assert dict(zip(by_status["status"], by_status["count"]))["ok"] == 1
    assert "at_risk" in render_html(rep)


FORMULAS = ["=1+2", "+1+2", "-A1", "@SUM(A1:A2)", "\tx", "\rx", '=HYPERLINK("a")']


def test_text_that_looks_like_a_formula_is_neutralised_for_people_and_never_a_live_formula(sessions, tmp_path):
    """Values stored before import restricted identifiers (or text any step writes) that start with
    =, +, -, @, a tab or a CR: the report CSV (opened by people) shows them with a leading
    apostrophe (OWASP), the xlsx holds them as string cells with the exact text, never a formula;
    amounts stay numbers."""
    from openpyxl.cell.cell import TYPE_FORMULA

    from batch.store.models import ReviewItem

    day = date(2027, 2, 19)
    with sessions() as s, s.begin():
        # February's premium unpaid past its due date, no month of 2027 paid: termination_pending (no grace)
        for i, text in enumerate(FORMULAS):
            _bill(s, text, f"P{i}", date(2027, 2, 1), 1000 + i)
        s.add(ReviewItem(kind="debit_stopped", subject="payment", amount_cents=5, detail="=1+2", status="open"))
    rep = coverage_report(sessions, day)
    rows = _csv(rep)[1:]
    assert sorted(r[0] for r in rows) == sorted("'" + t for t in FORMULAS)
    assert {r[2] for r in rows} == {"termination_pending"}
    assert sorted(r[5] for r in rows) == [f"10.{i:02d}" for i in range(len(FORMULAS))]
    assert sorted(r[1] for r in rows) == [f"P{i}" for i in range(len(FORMULAS))]  # safe text: unchanged

    for rep in (rep, returns_report(sessions, day)):
        path = write_report(rep, "xlsx", tmp_path / f"{rep.kind}.xlsx")
        wb = load_workbook(path)
        cells = [c for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None]
        assert cells and not [c.coordinate for c in cells if c.data_type == TYPE_FORMULA]
        values = {c.value for c in cells}
        # the exact text, as a string cell (XML reads a bare CR back as a line feed)
        wanted = {t.replace("\r", "\n") for t in FORMULAS} if rep.kind == "coverage" else {"=1+2"}
        assert wanted <= values
        # and in the file itself: no <f> element anywhere
        import zipfile
        with zipfile.ZipFile(path) as z:
            assert not any(b"<f>" in z.read(n) or b"<f " in z.read(n) for n in z.namelist() if n.endswith(".xml"))


def test_html_and_xlsx_carry_the_same_tables_and_never_an_account_number(book, sessions, keyring, tmp_path):
    w, members, o = book
    numbers = [o[m].entry.dfi_account_number for m in members]
    for rep in (reconciliation_report(sessions, keyring, date(2026, 12, 10)), returns_report(sessions, date(2026, 12, 10)),
                coverage_report(sessions, date(2026, 12, 24))):
        html = render_html(rep)
        assert f'id="{rep.kind}-table"' in html
        for col in COLUMNS[rep.kind]:
            assert f"<th scope=\"col\" data-col=\"{col}\">{heading(col)}</th>" in html
        path = write_report(rep, "xlsx", tmp_path / f"{rep.kind}.xlsx")
        wb = load_workbook(path)
        sheet = wb[rep.kind.capitalize()]
        header = [c.value for c in sheet[1]]
        assert sorted(header) == sorted(heading(c) for c in COLUMNS[rep.kind])
        assert sheet.max_row == len(rep.table) + 1
        csv_text = render_csv(rep)
        for text in (html, csv_text):
            assert not any(n in text for n in numbers)
        for ws in wb.worksheets:
            for row in ws.iter_rows(values_only=True):
                assert not any(str(v) in numbers for v in row if v is not None)
    rep = returns_report(sessions, date(2026, 12, 10))
    html = render_html(rep)
    assert html.count('class="warning"') == 3 and "<svg" in html
    assert not re.search(r"<script|<link|<img|src=|href=|url\(", html)  # no external assets, no scripts
    wb = load_workbook(write_report(rep, "xlsx", tmp_path / "r.xlsx"))
    sh = wb["Returns"]
    amount_col = [c.value for c in sh[1]].index("Amount") + 1
    cell = sh.cell(2, amount_col)
    assert cell.number_format == '"$"#,##0.00' and Decimal(str(cell.value)) * 100 == \
           Decimal(int(rep.table["amount"].iloc[0]))


def test_cli_report_default_paths_formats_and_exit_codes(cli_env, sessions, tmp_path):  # noqa: F811
    w = World(sessions, cli_env, tmp_path)
    members = [w.member() for _ in range(3)]
    o = w.originate()
    w.process(w.bank.returns([(o[members[0]], "R10")], RETURN_DAY))
    run = CliRunner()
    r = run.invoke(cli, ["report", "returns", "--date", "2026-12-10", "--format", "csv"])
    assert r.exit_code == 1 and "WARNING: unauthorized return rate 33.33%" in r.output
    out = tmp_path / "achbatch-data" / "reports" / "returns-2026-12-10.csv"
    assert out.read_text().splitlines()[0] == CONTRACT["returns"]
    r = run.invoke(cli, ["report", "reconciliation", "--date", "2026-12-10"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "achbatch-data" / "reports" / "reconciliation-2026-12-10.html").exists()
    target = tmp_path / "x" / "cov.xlsx"
    r = run.invoke(cli, ["report", "coverage", "--date", "2026-12-10", "--format", "xlsx", "--out", str(target)])
    assert r.exit_code == 0 and target.exists()
    r = run.invoke(cli, ["report", "nonsense"])
    assert r.exit_code == 2


# -- reports a finance person can use without help (issue 15) ------------------------------------

def _open_review_item(sessions, payment_member: str, cents: int = 4242, detail: str = "needs a person") -> int:
    from batch.store.models import Payment, ReviewItem

    with sessions() as s, s.begin():
        pid = s.scalar(select(Payment.id).where(Payment.member_id == payment_member).order_by(Payment.id))
        item = ReviewItem(kind="debit_stopped", subject="payment", payment_id=pid, amount_cents=cents, detail=detail,
                          status="open")
        s.add(item)
        s.flush()
        return item.id


def test_member_name_is_the_latest_premium_name_else_the_account_holder(book, sessions, keyring):
    from batch.rules.premium_calendar import due_date
    from batch.store.models import BankAccount, Payment, Premium
    from batch.report.reports import member_names

    w, members, o = book
    with sessions() as s, s.begin():
        # members[0] renamed in a later month's bill (another plan): the latest premium row wins
        s.add(Premium(member_id=members[0], member_name="Ada Lovelace-King", plan_id="DENT-1",
                      coverage_month=date(2027, 2, 1), amount_due_cents=500, subsidy="none", binder=False,
                      due_date=due_date(date(2027, 2, 1))))
        # a member with a payment and no premium row at all: the account holder's name
        ba = w.account(s, "5550001234", "021000021", holder="Pat Payer")
        s.add(Payment(confirmation_id="C-nobill", channel="portal", member_id="NOBILL1", plan_id="HLTH-1",
                      coverage_month=date(2027, 1, 1), amount_cents=100, bank_account_id=ba.id,
                      submitted_at=s.scalar(select(Payment.submitted_at).limit(1)), sec_code="WEB",
                      payment_type_code="S", originate_on=date(2026, 12, 2), state="failed"))
    with sessions() as s:
        names = member_names(s, {members[0], members[1], "NOBILL1", "NOBODY"})
    assert names == {members[0]: "Ada Lovelace-King", members[1]: "Member 2", "NOBILL1": "Pat Payer"}
    rows = _csv(returns_report(sessions, date(2026, 12, 10)))
    assert rows[0][-1] == "member_name" and len(rows[0]) == len(COLUMNS["returns"])
    by_member = {r[1]: r[-1] for r in rows[1:]}
    assert by_member == {members[0]: "Ada Lovelace-King", members[1]: "Member 2", members[2]: "Member 3",
                         members[3]: "Member 4"}


def test_every_csv_has_one_header_row_and_further_tables_go_to_their_own_csvs(book, sessions, keyring, tmp_path):
    w, members, o = book
    item = _open_review_item(sessions, members[5])
    reports = {"returns": returns_report(sessions, date(2026, 12, 10)),
               "coverage": coverage_report(sessions, date(2026, 12, 24)),
               "reconciliation": reconciliation_report(sessions, keyring, date(2026, 12, 10))}
    expected = {"returns": {"rates", "by-code", "by-category", "review", "prenote-returns"}, "coverage": {"by-status"},
                "reconciliation": {"controls", "bank"}}
    for kind, rep in reports.items():
        main = tmp_path / kind / f"{kind}-2026-12-10.csv"
        assert write_report(rep, "csv", main) == main
        files = sorted(p.name for p in main.parent.iterdir())
        assert files == sorted([main.name] + [f"{kind}-2026-12-10.{n}.csv" for n in expected[kind]])
        for p in main.parent.iterdir():
            rows = list(csv.reader(io.StringIO(p.read_text())))
            header = rows[0]
            assert rows and all(len(r) == len(header) for r in rows), p.name  # one table, no blank rows
            assert header not in rows[1:], p.name  # one header row
            assert all(re.fullmatch(r"[a-z_]+", c) for c in header), (p.name, header)
        assert ",".join(list(csv.reader(io.StringIO(main.read_text())))[0]) == CONTRACT[kind]
    review = list(csv.DictReader(io.StringIO((tmp_path / "returns" / "returns-2026-12-10.review.csv").read_text())))
    assert [(r["id"], r["member_id"], r["amount"], r["member_name"]) for r in review] == \
           [(str(item), members[5], "42.42", "Member 6")]
    header = (tmp_path / "returns" / "returns-2026-12-10.review.csv").read_text().splitlines()[0].split(",")
    assert header[-1] == "member_name" and header.index("where") < header.index("member_name")
    rates = list(csv.DictReader(io.StringIO((tmp_path / "returns" / "returns-2026-12-10.rates.csv").read_text())))
    assert {r["category"]: r["rate"] for r in rates}["unauthorized"] == "10.00%"


def test_xlsx_numbers_percentages_dates_headers_in_words_and_full_sheet_names(book, sessions, keyring, tmp_path):
    from datetime import datetime

    from openpyxl.cell.cell import TYPE_NUMERIC

    w, members, o = book
    _open_review_item(sessions, members[5])
    rep = returns_report(sessions, date(2026, 12, 10))
    wb = load_workbook(write_report(rep, "xlsx", tmp_path / "returns.xlsx"))
    assert wb.sheetnames == ["Summary", "Returns", "Return rates", "Returns by reason code", "Returns by category",
                             "Open review items", "Prenote returns", "Chart data"]
    sh = wb["Returns"]
    head = [c.value for c in sh[1]]
    assert head == ["Trace number", "Member ID", "Member name", "Plan ID", "Amount", "Return code", "Reason",
                    "Category", "Returned on", "What happens next"]
    rows = [dict(zip(head, r)) for r in sh.iter_rows(min_row=2)]
    assert len(rows) == 4
    for r in rows:
        assert r["Amount"].data_type == TYPE_NUMERIC and r["Amount"].number_format == '"$"#,##0.00'
        assert isinstance(r["Returned on"].value, datetime) and r["Returned on"].number_format == "yyyy-mm-dd"
        assert r["Member name"].value == f"Member {members.index(r['Member ID'].value) + 1}"
    assert sum(Decimal(str(r["Amount"].value)) for r in rows) * 100 == int(rep.table["amount"].sum())
    rates = {r[0].value: r for r in wb["Return rates"].iter_rows(min_row=2)}
    assert [c.value for c in wb["Return rates"][1]] == ["Category", "Returns", "Entries", "Rate", "NACHA threshold",
                                                         "Status"]
    unauth = rates["unauthorized"]
    assert unauth[3].data_type == TYPE_NUMERIC and unauth[3].number_format == "0.00%"
    assert Decimal(str(unauth[3].value)) == Decimal("0.1") and Decimal(str(unauth[4].value)) == Decimal("0.005")
    review = wb["Open review items"]
    rhead = [c.value for c in review[1]]
    assert rhead[:3] == ["Item", "Opened on", "Kind"] and rhead.index("Member name") == rhead.index("Member ID") + 1
    rrow = dict(zip(rhead, review[2]))
    assert rrow["Amount"].data_type == TYPE_NUMERIC and rrow["Amount"].value == Decimal("42.42") or \
        float(rrow["Amount"].value) == 42.42
    assert isinstance(rrow["Opened on"].value, datetime) and rrow["Opened on"].number_format == "yyyy-mm-dd"
    summary = {r[0].value: r[1] for r in wb["Summary"].iter_rows(min_row=2) if len(r) > 1}
    assert isinstance(summary["As of"].value, datetime) and summary["As of"].number_format == "yyyy-mm-dd"
    assert summary["Dollars returned"].data_type == TYPE_NUMERIC
    assert summary["Dollars returned"].number_format == '"$"#,##0.00'
    assert Decimal(str(summary["Dollars returned"].value)) * 100 == int(rep.table["amount"].sum())
    assert summary["Returns processed"].value == 4
    assert isinstance(wb["Chart data"]["A2"].value, datetime)

    cov = coverage_report(sessions, date(2026, 12, 24))
    wb = load_workbook(write_report(cov, "xlsx", tmp_path / "coverage.xlsx"))
    assert wb.sheetnames == ["Summary", "Coverage", "Policies by status"]
    head = [c.value for c in wb["Coverage"][1]]
    assert head == ["Member ID", "Member name", "Plan ID", "Status", "Reason", "Months owed", "Amount owed",
                    "Deadline"]
    for r in wb["Coverage"].iter_rows(min_row=2):
        r = dict(zip(head, r))
        assert r["Amount owed"].data_type == TYPE_NUMERIC and r["Amount owed"].number_format == '"$"#,##0.00'
        assert isinstance(r["Deadline"].value, datetime) and r["Months owed"].value == 1
        assert r["Member name"].value.startswith("Member ")
    rec = reconciliation_report(sessions, keyring, date(2026, 12, 10))
    wb = load_workbook(write_report(rec, "xlsx", tmp_path / "reconciliation.xlsx"))
    assert wb.sheetnames == ["Summary", "Reconciliation", "Control record check", "Bank statement"]
    head = [c.value for c in wb["Reconciliation"][1]]
    assert head == ["File", "Batch", "Effective date", "Entries", "Debits", "Entries returned", "Amount returned",
                    "Net"]
    row = dict(zip(head, wb["Reconciliation"][2]))
    assert isinstance(row["Effective date"].value, datetime) and row["Net"].number_format == '"$"#,##0.00'


def test_sheet_names_are_never_cut():
    """A section without a sheet name of its own is named after its title (before any comma) and
    never cut mid-word; two of the same name are numbered."""
    import pandas as pd

    from batch.report.reports import Report, Section, sections, xlsx_bytes

    df = pd.DataFrame({"amount": pd.array([100], dtype="Int64")})
    rep = Report("returns", date(2026, 12, 10), "t", df.assign(member_id="M1"),
                 [("Bank statement, matched and unmatched", df),
                  ("Settlement credits the bank posted that we cannot explain", df),
                  Section("Anything", df, "x", "Open review items"), Section("Again", df, "y", "Open review items")])
    got = sections(rep)
    assert [(s.name, s.sheet) for s in got[:2]] == [("bank-statement", "Bank statement"),
                                                    ("settlement-credits-the-bank-posted-that-we-cannot-explain",
                                                     "Settlement credits the bank")]
    from openpyxl import load_workbook as load

    wb = load(io.BytesIO(xlsx_bytes(rep)))
    assert wb.sheetnames == ["Summary", "Returns", "Bank statement", "Settlement credits the bank",
                             "Open review items", "Open review items 2"]


def test_cli_report_csv_writes_further_tables_beside_it_and_out_dash_only_the_main_table(cli_env, sessions,  # noqa: F811
                                                                                          tmp_path):
    w = World(sessions, cli_env, tmp_path)
    members = [w.member() for _ in range(3)]
    o = w.originate()
    w.process(w.bank.returns([(o[members[0]], "R01")], RETURN_DAY))
    _open_review_item(sessions, members[1])
    run = CliRunner()
    r = run.invoke(cli, ["report", "returns", "--date", "2026-12-10", "--format", "csv"])
    folder = tmp_path / "achbatch-data" / "reports"
    assert sorted(p.name for p in folder.iterdir()) == [
        "returns-2026-12-10.by-category.csv", "returns-2026-12-10.by-code.csv", "returns-2026-12-10.csv",
        "returns-2026-12-10.prenote-returns.csv", "returns-2026-12-10.rates.csv", "returns-2026-12-10.review.csv"]
    assert "returns-2026-12-10.review.csv" in r.output and "beside it" in r.output
    r = run.invoke(cli, ["report", "returns", "--date", "2026-12-10", "--format", "csv", "--out", "-"])
    lines = r.stdout.splitlines()
    assert lines[0] == CONTRACT["returns"] and len(lines) == 2 and lines[1].endswith(",Member 1")
    assert "not written with --out -" in r.stderr and "review" in r.stderr and "review" not in r.stdout
    assert len(list(folder.iterdir())) == 6  # nothing more written by --out -
