"""Never take money that should not be taken (batch/rules/debit_rules.py, batch/collect/debit_guard.py, and where
AutoPay, return processing and origination ask them): the pure rules over their edge dates, then
the audit's paths through the real CLI on SQLite and PostgreSQL, with the simulated bank answering
our own files."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from batch.rules import debit_rules as R
from batch.store.models import Payment, PaymentEvent, PaymentReturn, ReviewItem
from jobs.cli import cli
from nacha.calendar import add_banking_days

from test_returns import cli_env  # noqa: F401  (fixture: settings from the environment)
from test_returns_simbank import SimBank, originals

PLAN = "HLTH-1"
AUTH = "2026-11-02T09:15:00-05:00"


# =============================================================================================
# Pure rules
# =============================================================================================

@pytest.mark.parametrize("run_date, lead, due", [
    # January 2027 coverage: due Wed 2026-12-23, drafted (filed) Tue 12-22.
    (date(2026, 12, 21), 0, date(2026, 11, 23)),
    (date(2026, 12, 22), 0, date(2026, 12, 23)),
    (date(2026, 12, 23), 0, date(2026, 12, 23)),
    (date(2027, 1, 20), 0, date(2026, 12, 23)),  # host down on the draft day: caught up, one month only
    # February: due Sat 2027-01-23, settles Fri 01-22, drafted Thu 01-21.
    (date(2027, 1, 21), 0, date(2027, 1, 23)),
    (date(2026, 12, 17), 2, date(2026, 11, 23)),
    (date(2026, 12, 18), 2, date(2026, 12, 23)),
])
def test_current_due_date_is_the_latest_whose_draft_date_came(run_date, lead, due):
    assert R.current_due_date(run_date, lead) == due


def test_authorized_for_the_due_date_and_later_only():
    assert R.authorized_for(date(2026, 12, 23), date(2026, 12, 23)).ok
    assert R.authorized_for(date(2026, 12, 23), date(2026, 12, 22)).ok
    v = R.authorized_for(date(2026, 12, 23), date(2026, 12, 24))
    assert not v.ok and "before the AutoPay authorization of 2026-12-24" in v.reason


@pytest.mark.parametrize("month, status, ends, first, ok", [
    (date(2027, 1, 1), "ok", None, None, True),
    (date(2027, 1, 1), "past_due", None, date(2027, 1, 1), True),
    (date(2027, 1, 1), "not_started", None, date(2027, 1, 1), False),  # the lapsed binder itself
    (date(2027, 2, 1), "not_started", None, date(2027, 1, 1), False),  # and every later month
    (date(2027, 1, 1), "terminated", date(2027, 1, 31), date(2027, 1, 1), True),  # up to the coverage end
    (date(2027, 2, 1), "terminated", date(2027, 1, 31), date(2027, 1, 1), False),  # the month after it
    (date(2026, 12, 1), "terminated", date(2026, 12, 31), date(2027, 1, 1), True),
    (date(2027, 1, 1), "terminated", date(2026, 12, 31), date(2027, 1, 1), False),
])
def test_coverage_allows(month, status, ends, first, ok):
    assert R.coverage_allows(month, status, ends, first).ok is ok


def _ret(on: date, settled: date | None = None) -> R.PriorReturn:
    return R.PriorReturn(on, settled or on)


def test_reinitiation_limit_counts_returns_since_the_authorization():
    auth = date(2026, 11, 2)
    three = [_ret(date(2026, 12, 3)), _ret(date(2026, 12, 9)), _ret(date(2026, 12, 15))]
    assert R.reinitiation_allows([], auth, date(2026, 12, 23)).ok
    assert R.reinitiation_allows(three[:2], auth, date(2026, 12, 23)).ok
    v = R.reinitiation_allows(three, auth, date(2026, 12, 23))
    assert not v.ok and "2 re-presentments" in v.reason
    # Each authorization starts over from the returns processed after it; one on the day of a return
    # is not taken to be newer than it (the first return still counts: three, refused).
    assert not R.reinitiation_allows(three, date(2026, 12, 3), date(2026, 12, 23)).ok
    assert R.reinitiation_allows(three, date(2026, 12, 4), date(2026, 12, 23)).ok  # two counted
    assert R.reinitiation_allows(three, date(2026, 12, 16), date(2026, 12, 23)).ok  # none counted


def test_reinitiation_window_is_180_days_after_the_first_returned_settlement():
    first = _ret(date(2026, 12, 3), settled=date(2026, 12, 2))
    assert R.reinitiation_allows([first], date(2026, 11, 2), date(2026, 12, 2) + R_days(180)).ok
    v = R.reinitiation_allows([first], date(2026, 11, 2), date(2026, 12, 2) + R_days(181))
    assert not v.ok and "past 180 days" in v.reason


def R_days(n: int):
    from datetime import timedelta

    return timedelta(days=n)


def test_excess_debits_cancels_our_own_debits_first_and_reviews_what_was_collected():
    d = R.Debit
    # A partial payment plus AutoPay's pull of the remainder: fine.
    assert R.excess_debits(10000, [d(1, "portal", "sent", 4000), d(2, "autopay", "pending", 6000)]) == R.Excess()
    # A second full debit: the pending AutoPay pull yields to the member's own payment.
    ex = R.excess_debits(10000, [d(1, "autopay", "pending", 10000), d(2, "portal", "pending", 10000)])
    assert ex.cancel == (1,) and ex.review == () and ex.excess_cents == 10000
    # A pull of the full premium beside a partial payment: lowered to the remainder.
    ex = R.excess_debits(10000, [d(1, "autopay", "pending", 10000), d(2, "portal", "pending", 4000)])
    assert ex.cancel == () and ex.reduce == ((1, 6000),)
    # A re-presentment is never lowered (it carries the original amount): cancelled.
    ex = R.excess_debits(10000, [d(1, "retry", "pending", 10000), d(2, "portal", "sent", 4000)])
    assert ex.cancel == (1,) and ex.reduce == ()
    # Re-presentments before AutoPay, the newest member payment before an older one.
    ex = R.excess_debits(10000, [d(1, "portal", "pending", 10000), d(2, "portal", "pending", 10000),
                                 d(3, "retry", "pending", 10000), d(4, "autopay", "pending", 10000)])
    assert ex.cancel == (3, 4, 2)
    # A dishonor restored #1: the re-presentment already in a file is a double collection.
    ex = R.excess_debits(10000, [d(1, "autopay", "settled", 10000), d(2, "retry", "in_file", 10000, 1)], keep=[1])
    assert ex.cancel == () and ex.review == (2,)
    # Returned and failed payments do not count; no premium on record: nothing judged.
    assert R.excess_debits(10000, [d(1, "autopay", "returned", 10000), d(2, "retry", "pending", 10000)]) == R.Excess()
    assert R.excess_debits(None, [d(1, "portal", "sent", 10000), d(2, "portal", "pending", 10000)]) == R.Excess()


# =============================================================================================
# The audit's paths, through the CLI
# =============================================================================================

class Night:
    """Drives the `achbatch` CLI in a data folder and answers as the bank."""

    def __init__(self, tmp_path: Path, sessions):
        self.tmp, self.sessions = tmp_path, sessions
        self.run = CliRunner()
        self.bank = SimBank()
        self.sent: dict[str, object] = {}  # trace -> Original
        self.n = 0

    def cli(self, *args: str, code: int | None = 0) -> str:
        r = self.run.invoke(cli, [str(a) for a in args])
        if code is not None:
            assert r.exit_code == code, r.output
        return r.output

    def csv(self, kind: str, header: str, *rows: str) -> None:
        self.n += 1
        p = self.tmp / f"{kind}-{self.n}.csv"
        p.write_text(header + "\n" + "\n".join(rows) + "\n")
        self.cli("import", kind, p, code=None)
        self.last_import = p

    def premiums(self, *rows: str) -> None:
        self.csv("premiums", "member_id,member_name,plan_id,coverage_month,amount_due,subsidy,binder", *rows)

    def mandate(self, member: str, account: str = "4004001234", authorized: str = AUTH, routing="011000015") -> None:
        self.csv("autopay", "member_id,plan_id,routing_number,account_number,account_type,account_holder,"
                 "authorized_at,channel", f"{member},{PLAN},{routing},{account},checking,{member} Holder,{authorized},web")

    def portal(self, conf: str, member: str, month: str, amount: str, submitted: str, account: str = "4004001234",
               routing="011000015") -> None:
        self.csv("payments", "confirmation_id,submitted_at,channel,member_id,plan_id,coverage_month,amount,"
                 "routing_number,account_number,account_type,account_holder",
                 f"{conf},{submitted},portal,{member},{PLAN},{month},{amount},{routing},{account},checking,{member} H")

    def originate(self, d: date, code: int | None = 0, *, earlier: bool = False) -> str:
        out = self.cli("originate", "--date", d.isoformat(), *(["--allow-earlier-date"] if earlier else []), code=code)
        for p in (self.tmp / "achbatch-data" / "outbox").glob(f"ACH-{d:%Y%m%d}-*.ach"):
            self.sent.update(originals(p))
        return out

    def entry_of(self, payment_id: int):
        with self.sessions() as s:
            from batch.store.models import FileEntry
            trace = s.scalar(select(FileEntry.trace_number).where(FileEntry.payment_id == payment_id))
        return self.sent[trace]

    def returns(self, d: date, answers, kind: str = "returns") -> str:
        self.n += 1
        text = getattr(self.bank, kind)(answers, d, modifier="A")
        p = self.tmp / f"bank-{self.n}.ach"
        p.write_text(text)
        return self.cli("returns", "process", p, "--date", d.isoformat(), code=None)

    def payments(self, member: str) -> list[Payment]:
        with self.sessions() as s:
            return list(s.scalars(select(Payment).where(Payment.member_id == member).order_by(Payment.id)))

    def reviews(self, kind: str) -> list[ReviewItem]:
        with self.sessions() as s:
            return list(s.scalars(select(ReviewItem).where(ReviewItem.kind == kind).order_by(ReviewItem.id)))


@pytest.fixture
def night(cli_env, tmp_path, sessions):  # noqa: F811
    return Night(tmp_path, sessions)


def test_a_dishonor_never_leaves_two_debits_for_one_premium(night):
    """R01 -> re-presentment -> the ODFI dishonors the return: the original stands. A re-presentment
    still pending is cancelled; one already in a file opens a double_collection review naming both."""
    night.premiums(f"M1,Avery One,{PLAN},2027-01,412.37,aptc,no", f"M2,Blake Two,{PLAN},2027-01,100.00,aptc,no")
    night.mandate("M1")
    night.mandate("M2", account="5005001234")
    night.cli("autopay", "schedule", "--date", "2026-12-22")
    night.originate(date(2026, 12, 22))
    p1, p2 = night.payments("M1")[0], night.payments("M2")[0]
    o1, o2 = night.entry_of(p1.id), night.entry_of(p2.id)
    out = night.returns(date(2026, 12, 24), [(o1, "R01"), (o2, "R01")])
    assert "2 re-presentments scheduled" in out or "re-presentment" in out
    retry_day = add_banking_days(date(2026, 12, 24), 2)
    assert retry_day == date(2026, 12, 29)
    # M1's re-presentment goes into a file; M2's is still pending when the dishonors come.
    with night.sessions() as s, s.begin():  # (M2's re-presentment moved to a later day)
        r2 = night.payments("M2")[1]
        s.get(Payment, r2.id).originate_on = date(2026, 12, 31)
    night.originate(retry_day)
    assert [p.state for p in night.payments("M1")] == ["returned", "in_file"]
    assert [p.state for p in night.payments("M2")] == ["returned", "pending"]
    night.returns(date(2026, 12, 30), [(o1, "R68", "R01"), (o2, "R68", "R01")], kind="dishonored")
    m1 = night.payments("M1")
    assert [p.state for p in m1] == ["settled", "in_file"]
    (item,) = night.reviews("double_collection")
    assert (item.subject, item.payment_id, item.related_payment_id, item.status) == ("payment", m1[0].id, m1[1].id,
                                                                                      "open")
    assert f"#{m1[0].id}" in item.detail and f"#{m1[1].id}" in item.detail and "finance" in item.detail
    # The returns report shows it (a warning and the open review items) until a person resolves it.
    night.cli("report", "returns", "--date", "2026-12-30", "--format", "html", code=1)
    page = (night.tmp / "achbatch-data" / "reports" / "returns-2026-12-30.html").read_text()
    assert "collected twice" in page and f"#{item.id}" in page and "Open review items" in page
    assert "double_collection" in page
    m2 = night.payments("M2")
    assert [p.state for p in m2] == ["settled", "failed"]
    with night.sessions() as s:
        ev = s.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == m2[1].id)).one()
        assert ev.event == "stopped" and "dishonored" in ev.reason
    assert night.originate(date(2026, 12, 31)).startswith("originate 2026-12-31: nothing to originate")
    # A contested dishonor puts the return back and restores nothing.
    night.returns(date(2027, 1, 4), [(o2, "R73", "R01")], kind="contested")
    assert [p.state for p in night.payments("M2")] == ["returned", "failed"]


def test_a_lapsed_binder_is_neither_re_presented_nor_pulled(night):
    night.premiums(f"B1,Binder One,{PLAN},2027-01,250.00,aptc,yes", f"B2,Binder Two,{PLAN},2027-01,250.00,aptc,yes",
                   f"B2,Binder Two,{PLAN},2027-02,250.00,aptc,no", f"B3,Binder Three,{PLAN},2027-01,250.00,none,yes")
    # B1 pays its binder on 12-18; the R01 is processed 12-22, the re-presentment would go out 12-24,
    # after the due date (12-23): coverage can no longer start, so no re-presentment.
    night.portal("PC-B1", "B1", "2027-01", "250.00", "2026-12-18T10:00:00-05:00")
    night.originate(date(2026, 12, 18))
    (pay,) = night.payments("B1")
    out = night.returns(date(2026, 12, 22), [(night.entry_of(pay.id), "R01")])
    assert "0 re-presentments scheduled" in out or "re-presentments scheduled" not in out
    assert [p.state for p in night.payments("B1")] == ["returned"]
    with night.sessions() as s:
        ret = s.scalars(select(PaymentReturn)).one()
    assert "coverage never started" in ret.action and ret.retry_payment_id is None
    # The day before, the re-presentment would still have gone out on the due date itself (a day
    # earlier than the one already originated: allowed on purpose).
    night.portal("PC-B3", "B3", "2027-01", "250.00", "2026-12-17T10:00:00-05:00")
    night.originate(date(2026, 12, 17), earlier=True)
    (pay3,) = night.payments("B3")
    night.returns(date(2026, 12, 21), [(night.entry_of(pay3.id), "R01")])
    assert [(p.channel, p.state, p.originate_on) for p in night.payments("B3")] == [
        ("portal", "returned", date(2026, 12, 17)), ("retry", "pending", date(2026, 12, 23))]
    # B2's mandate was authorized 12-20 but the host was down on the draft day: on 12-28 the
    # binder's due date has passed unpaid: no pull, for the binder or for February.
    night.mandate("B2", account="6006001234", authorized="2026-12-20T09:00:00-05:00")
    out = night.cli("autopay", "schedule", "--date", "2026-12-28")
    assert "0 pulls created" in out and "1 pull refused" in out and "coverage never started" in out
    out = night.cli("autopay", "schedule", "--date", "2027-01-21")
    assert "0 pulls created" in out and "coverage never started" in out
    assert night.payments("B2") == []


def test_a_mandate_pulls_nothing_due_before_its_authorization(night):
    night.premiums(f"A1,Late Mandate,{PLAN},2027-01,100.00,aptc,no", f"A1,Late Mandate,{PLAN},2027-02,100.00,aptc,no")
    night.mandate("A1", authorized="2026-12-24T09:00:00-05:00")  # after January's due date (12-23)
    out = night.cli("autopay", "schedule", "--date", "2026-12-28")
    assert "0 pulls created" in out and "1 premium due before their AutoPay authorization" in out
    out = night.cli("autopay", "schedule", "--date", "2027-01-21")
    assert "1 pull created" in out
    assert [(p.coverage_month, p.amount_cents) for p in night.payments("A1")] == [(date(2027, 2, 1), 10000)]


def test_autopay_never_sweeps_a_backlog_nor_pulls_after_coverage_end(night):
    """The audit: a mandate imported late for a terminated policy pulled five months, $500, in one
    night. Now: only the month currently due, and not that one once coverage ended."""
    months = ["2027-01", "2027-02", "2027-03", "2027-04", "2027-05"]
    night.premiums(*[f"T1,Terminated One,{PLAN},{m},100.00,none,no" for m in months],
                   *[f"G1,Grace One,{PLAN},{m},100.00,aptc,no" for m in months],
                   *[f"C1,Current One,{PLAN},{m},100.00,aptc,no" for m in months])
    night.portal("PC-C1a", "C1", "2027-01", "100.00", "2026-12-01T10:00:00-05:00", account="7007001234")
    night.portal("PC-C1b", "C1", "2027-02", "100.00", "2027-01-04T10:00:00-05:00", account="7007001234")
    night.portal("PC-C1c", "C1", "2027-03", "100.00", "2027-02-01T10:00:00-05:00", account="7007001234")
    for d in (date(2026, 12, 1), date(2027, 1, 4), date(2027, 2, 1)):
        night.originate(d)
    for m, acct in (("T1", "4004001234"), ("G1", "5005001234"), ("C1", "7007001234")):
        night.mandate(m, account=acct)
    # April 2027 run (May coverage is due 04-23, drafted 04-22): T1 (no grace) and G1 (3 months'
    # grace from January, over on 04-23... terminated since) owe January to May.
    out = night.cli("autopay", "schedule", "--date", "2027-04-26")
    assert "premiums due 2027-04-23" in out
    pulls = {m: [(p.coverage_month, p.state) for p in night.payments(m) if p.channel == "autopay"]
             for m in ("T1", "G1", "C1")}
    assert pulls["T1"] == [] and pulls["G1"] == []
    assert "coverage ended" in out
    # C1 paid through March and missed April: only May, the month currently due, is pulled.
    assert pulls["C1"] == [(date(2027, 5, 1), "pending")]
    night.originate(date(2027, 4, 26))
    with night.sessions() as s:
        debited = s.scalars(select(Payment).where(Payment.channel == "autopay")).all()
    assert [(p.member_id, p.amount_cents, p.state) for p in debited] == [("C1", 10000, "in_file")]


def test_the_reinitiation_limit_holds_across_channels(night):
    """A portal payment and its two re-presentments returned R01: AutoPay (authorized before) makes
    no fourth attempt for that month; a portal payment made after the last return starts over."""
    night.premiums(f"R1,Retry One,{PLAN},2027-01,300.00,aptc,no")
    night.mandate("R1")  # the same account, authorized 2026-11-02
    night.portal("PC-R1", "R1", "2027-01", "300.00", "2026-12-01T10:00:00-05:00")
    day = date(2026, 12, 1)
    night.originate(day)
    for n in range(3):
        last = night.payments("R1")[-1]
        back = add_banking_days(day, 2)
        night.returns(back, [(night.entry_of(last.id), "R01")])
        if n < 2:
            retry = night.payments("R1")[-1]
            assert (retry.channel, retry.retry_number, retry.state) == ("retry", n + 1, "pending")
            day = retry.originate_on
            night.originate(day)
    assert [p.state for p in night.payments("R1")] == ["returned"] * 3
    out = night.cli("autopay", "schedule", "--date", "2026-12-22")
    assert "0 pulls created" in out and "2 re-presentments of this premium were returned" in out
    assert len(night.payments("R1")) == 3
    # A new authorization: the member pays in the portal after the last return: it goes out.
    night.portal("PC-R1-new", "R1", "2027-01", "300.00", "2026-12-22T18:00:00-05:00")
    night.originate(date(2026, 12, 22))
    assert [p.state for p in night.payments("R1")] == ["returned"] * 3 + ["in_file"]


def test_origination_never_puts_more_in_flight_than_is_owed(night):
    night.premiums(f"O1,Owed One,{PLAN},2027-01,200.00,aptc,no", f"O2,Owed Two,{PLAN},2027-01,200.00,aptc,no",
                   f"O3,Owed Three,{PLAN},2027-01,200.00,aptc,no")
    night.mandate("O1")
    night.mandate("O3", account="8008001234")
    night.cli("autopay", "schedule", "--date", "2026-12-22")  # pulls O1 and O3 in full
    # The same evening O1 pays in full in the portal and O3 pays half: O1's pull yields, O3's stays.
    night.portal("PC-O1", "O1", "2027-01", "200.00", "2026-12-22T12:00:00-05:00")
    night.portal("PC-O3", "O3", "2027-01", "100.00", "2026-12-22T12:00:00-05:00", account="8008001234")
    # O2 pays twice in full (two confirmations): the second is stopped and goes to review.
    night.portal("PC-O2a", "O2", "2027-01", "200.00", "2026-12-22T12:00:00-05:00", account="9009001234")
    night.portal("PC-O2b", "O2", "2027-01", "200.00", "2026-12-22T12:05:00-05:00", account="9009001234")
    out = night.originate(date(2026, 12, 22), code=1)
    assert "stopped 2 debits" in out and "1 of them a member payment:" in out
    assert [(p.channel, p.state) for p in night.payments("O1")] == [("autopay", "failed"), ("portal", "in_file")]
    assert [(p.confirmation_id, p.state) for p in night.payments("O2")] == [("PC-O2a", "in_file"),
                                                                             ("PC-O2b", "failed")]
    # O3: a partial payment plus the AutoPay pull of the full premium is over by $100: the pull is
    # lowered to the remainder; both go.
    assert "lowered 1 AutoPay pull to" in out
    assert [(p.channel, p.amount_cents, p.state) for p in night.payments("O3")] == [
        ("autopay", 10000, "in_file"), ("portal", 10000, "in_file")]
    (item,) = night.reviews("debit_stopped")
    assert item.payment_id == night.payments("O2")[1].id and "beyond" in item.detail
    with night.sessions() as s:
        ev = s.scalars(select(PaymentEvent).where(PaymentEvent.payment_id == night.payments("O1")[0].id)).one()
    assert ev.event == "stopped" and "owed" in ev.reason


def test_money_words():
    from batch.rules.money import dollars, plain_dollars

    assert [dollars(c) for c in (0, 5, 100, 123456, -100, 10**12)] == [
        "$0.00", "$0.05", "$1.00", "$1,234.56", "-$1.00", "$10,000,000,000.00"]
    assert [plain_dollars(c) for c in (0, 5, 123456, -100)] == ["0.00", "0.05", "1234.56", "-1.00"]
