"""Coverage standing: the pure rules (batch.coverage.assess_policy) as a table of cases around the
23rd, weekends and Federal Reserve holidays, binder and later months, returns after a payment was
counted as paid; then the service on SQLite and PostgreSQL (one current flag per policy, history)."""
from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

import batch.coverage as coverage_mod
from batch.coverage import CoverageRules, PaymentFact, PremiumFact, assess_coverage, assess_policy, months_later
from batch.crypto import generate_secret
from batch.models import BankAccount, CoverageFlag, Notice, Payment, PaymentReturn, Premium, ReturnFile
from batch.premium_calendar import due_date
from jobs.cli import cli
from nacha.calendar import fed_holidays, is_banking_day

D = date
JAN, FEB, MAR, APR = D(2027, 1, 1), D(2027, 2, 1), D(2027, 3, 1), D(2027, 4, 1)


def prem(month, cents=10000, subsidy="aptc", binder=False):
    return PremiumFact(month, cents, subsidy, binder, due_date(month))


def pay(month, paid_on, cents=10000, returned_on=None, code=None):
    return PaymentFact(month, cents, paid_on, returned_on, code)


def policy(subsidy="aptc", months=(JAN, FEB, MAR, APR), binder=True):
    return [prem(m, subsidy=subsidy, binder=(binder and i == 0)) for i, m in enumerate(months)]


BINDER_PAID = pay(JAN, D(2026, 12, 20))
ALL = policy()
NONE = policy("none")
CC = policy("connectorcare")


def test_calendar_facts_the_cases_rely_on():
    assert due_date(JAN) == D(2026, 12, 23) and due_date(FEB) == D(2027, 1, 23)
    assert D(2027, 1, 23).weekday() == 5  # Feb's due date is a Saturday
    assert D(2028, 11, 23) in fed_holidays(2028)  # Thanksgiving on the 23rd: Dec 2028's due date
    assert not is_banking_day(D(2026, 12, 25))


# (id, premiums, payments, as_of, rules, expected: status, reason_code, months_owed, amount_owed, deadline,
#  grace_month, coverage_ends_on)
R = CoverageRules()
CASES = [
    # -- the binder --------------------------------------------------------------------------------
    ("binder unpaid on its due date: not due yet", ALL, [], D(2026, 12, 23), R,
     ("ok", "binder_not_due", 0, 0, None, 0, None)),
    ("binder unpaid the day after", ALL, [], D(2026, 12, 24), R,
     ("not_started", "binder_unpaid", 1, 10000, None, 0, None)),
    ("binder paid early, before its due date", ALL, [BINDER_PAID], D(2026, 12, 21), R,
     ("ok", "paid", 0, 0, None, 0, None)),
    ("binder paid on the 23rd itself", ALL, [pay(JAN, D(2026, 12, 23))], D(2026, 12, 24), R,
     ("ok", "paid", 0, 0, None, 0, None)),
    ("binder paid a day late: coverage does not start", ALL, [pay(JAN, D(2026, 12, 24))], D(2026, 12, 28), R,
     ("not_started", "binder_unpaid", 0, 0, None, 0, None)),
    ("binder returned after counting as paid", ALL, [pay(JAN, D(2026, 12, 20), returned_on=D(2026, 12, 28),
                                                         code="R01")], D(2026, 12, 28), R,
     ("not_started", "binder_returned", 1, 10000, None, 0, None)),
    ("binder return not processed yet on the date assessed", ALL,
     [pay(JAN, D(2026, 12, 20), returned_on=D(2026, 12, 28), code="R01")], D(2026, 12, 27), R,
     ("ok", "paid", 0, 0, None, 0, None)),
    ("binder returned, re-presented after the due date: still not started", ALL,
     [pay(JAN, D(2026, 12, 20), returned_on=D(2026, 12, 28), code="R01"), pay(JAN, D(2026, 12, 30))],
     D(2027, 1, 4), R, ("not_started", "binder_returned", 0, 0, None, 0, None)),
    ("binder partly paid", ALL, [pay(JAN, D(2026, 12, 20), 6000)], D(2026, 12, 24), R,
     ("not_started", "binder_partial", 1, 4000, None, 0, None)),
    ("binder short by less than the threshold counts as paid", ALL, [pay(JAN, D(2026, 12, 20), 9950)],
     D(2026, 12, 24), CoverageRules(payment_threshold_cents=100), ("ok", "paid", 0, 0, None, 0, None)),
    ("binder paid in two parts by the 23rd", ALL, [pay(JAN, D(2026, 12, 10), 4000), pay(JAN, D(2026, 12, 23), 6000)],
     D(2026, 12, 24), R, ("ok", "paid", 0, 0, None, 0, None)),
    # -- a later month due on a Saturday (2027-01-23) --------------------------------------------------
    ("Feb unpaid on its Saturday due date: not past due", ALL, [BINDER_PAID], D(2027, 1, 23), R,
     ("ok", "paid", 0, 0, None, 0, None)),
    ("Feb unpaid the Sunday after: grace month 1", ALL, [BINDER_PAID], D(2027, 1, 24), R,
     ("past_due", "premium_unpaid", 1, 10000, D(2027, 2, 23), 1, None)),
    ("Feb paid online on the Saturday 23rd counts as on time", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 1, 23))], D(2027, 1, 24), R, ("ok", "paid", 0, 0, None, 0, None)),
    ("Feb paid Monday 25th cures (a payment in full)", ALL, [BINDER_PAID, pay(FEB, D(2027, 1, 25))],
     D(2027, 1, 26), R, ("ok", "paid", 0, 0, None, 0, None)),
    ("Feb paid Monday 25th, assessed the Sunday before", ALL, [BINDER_PAID, pay(FEB, D(2027, 1, 25))],
     D(2027, 1, 24), R, ("past_due", "premium_unpaid", 1, 10000, D(2027, 2, 23), 1, None)),
    ("Feb AutoPay pull (drafted Thu 21st) returned R01 after the due date", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 1, 21), returned_on=D(2027, 1, 26), code="R01")], D(2027, 1, 26), R,
     ("past_due", "premium_returned", 1, 10000, D(2027, 2, 23), 1, None)),
    ("... and its re-presentment originated two banking days later cures", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 1, 21), returned_on=D(2027, 1, 26), code="R01"), pay(FEB, D(2027, 1, 28))],
     D(2027, 1, 28), R, ("ok", "paid", 0, 0, None, 0, None)),
    ("... but not before it is originated", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 1, 21), returned_on=D(2027, 1, 26), code="R01"), pay(FEB, D(2027, 1, 28))],
     D(2027, 1, 27), R, ("past_due", "premium_returned", 1, 10000, D(2027, 2, 23), 1, None)),
    ("Feb partly paid does not cure", ALL, [BINDER_PAID, pay(FEB, D(2027, 1, 20), 7000)], D(2027, 1, 24), R,
     ("past_due", "premium_partial", 1, 3000, D(2027, 2, 23), 1, None)),
    # -- the APTC / ConnectorCare grace period ------------------------------------------------------
    ("grace month 1 still on the next 23rd", ALL, [BINDER_PAID], D(2027, 2, 23), R,
     ("past_due", "premium_unpaid", 1, 10000, D(2027, 2, 23), 1, None)),
    ("grace month 2 the day after: Feb and Mar owed", ALL, [BINDER_PAID], D(2027, 2, 24), R,
     ("past_due", "premium_unpaid", 2, 20000, D(2027, 3, 23), 2, None)),
    ("grace month 3: termination pending", ALL, [BINDER_PAID], D(2027, 3, 24), R,
     ("termination_pending", "premium_unpaid", 3, 30000, D(2027, 4, 23), 3, None)),
    ("grace period over: terminated at the end of grace month 1", ALL, [BINDER_PAID], D(2027, 4, 24), R,
     ("terminated", "premium_unpaid", 3, 30000, None, 4, D(2027, 2, 28))),
    ("ConnectorCare has the same grace period", CC, [BINDER_PAID], D(2027, 2, 24), R,
     ("past_due", "premium_unpaid", 2, 20000, D(2027, 3, 23), 2, None)),
    ("paying a later month does not restart the grace clock", ALL,
     [BINDER_PAID, pay(MAR, D(2027, 2, 20))], D(2027, 2, 24), R,
     ("past_due", "premium_unpaid", 1, 10000, D(2027, 3, 23), 2, None)),
    ("paying only the oldest month does not restart it either", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 2, 25))], D(2027, 2, 26), R,
     ("past_due", "premium_unpaid", 1, 10000, D(2027, 3, 23), 2, None)),
    ("paying everything owed ends it", ALL, [BINDER_PAID, pay(FEB, D(2027, 3, 1)), pay(MAR, D(2027, 3, 1))],
     D(2027, 3, 2), R, ("ok", "paid", 0, 0, None, 0, None)),
    ("a later month returned after being counted as paid", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 1, 20)), pay(MAR, D(2027, 2, 20), returned_on=D(2027, 3, 10), code="R10")],
     D(2027, 3, 10), R, ("past_due", "premium_returned", 1, 10000, D(2027, 3, 23), 1, None)),
    ("... assessed the day before that return was processed", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 1, 20)), pay(MAR, D(2027, 2, 20), returned_on=D(2027, 3, 10), code="R10")],
     D(2027, 3, 9), R, ("ok", "paid", 0, 0, None, 0, None)),
    ("a shorter configured grace period", ALL, [BINDER_PAID], D(2027, 1, 24), CoverageRules(grace_months_subsidized=1),
     ("termination_pending", "premium_unpaid", 1, 10000, D(2027, 2, 23), 1, None)),
    ("... over after its one month", ALL, [BINDER_PAID], D(2027, 2, 24), CoverageRules(grace_months_subsidized=1),
     ("terminated", "premium_unpaid", 2, 20000, None, 2, D(2027, 2, 28))),
    # -- unsubsidized members: no grace period -------------------------------------------------------
    ("unsubsidized: straight to termination pending", NONE, [BINDER_PAID], D(2027, 1, 24), R,
     ("termination_pending", "premium_unpaid", 1, 10000, D(2027, 2, 23), 1, None)),
    ("unsubsidized: terminated back to the last month paid", NONE, [BINDER_PAID], D(2027, 2, 24), R,
     ("terminated", "premium_unpaid", 2, 20000, None, 2, D(2027, 1, 31))),
    ("unsubsidized with a configured grace month", NONE, [BINDER_PAID], D(2027, 1, 24),
     CoverageRules(grace_months_unsubsidized=2), ("past_due", "premium_unpaid", 1, 10000, D(2027, 2, 23), 1, None)),
    # -- no binder (a renewing member), holidays ---------------------------------------------------
    ("no binder on file: a missed month is past due, not 'not started'", policy(binder=False), [], D(2026, 12, 24), R,
     ("past_due", "premium_unpaid", 1, 10000, D(2027, 1, 23), 1, None)),
    ("binder due on Thanksgiving (Fed holiday): paid online that day is on time", [prem(D(2028, 12, 1), binder=True)],
     [pay(D(2028, 12, 1), D(2028, 11, 23))], D(2028, 11, 24), R, ("ok", "paid", 0, 0, None, 0, None)),
    ("binder due on Thanksgiving: paid the next banking day is late", [prem(D(2028, 12, 1), binder=True)],
     [pay(D(2028, 12, 1), D(2028, 11, 24))], D(2028, 11, 27), R,
     ("not_started", "binder_unpaid", 0, 0, None, 0, None)),
    ("a later month due on Thanksgiving, unpaid, assessed Friday after", [prem(D(2028, 11, 1), binder=True),
                                                                           prem(D(2028, 12, 1))],
     [pay(D(2028, 11, 1), D(2028, 10, 20))], D(2028, 11, 24), R,
     ("past_due", "premium_unpaid", 1, 10000, D(2028, 12, 23), 1, None)),
    ("no premiums billed", [], [], D(2027, 1, 1), R, ("ok", "no_premiums", 0, 0, None, 0, None)),
]


@pytest.mark.parametrize("name, premiums, payments, as_of, rules, expected", CASES, ids=[c[0] for c in CASES])
def test_coverage_rules(name, premiums, payments, as_of, rules, expected):
    st = assess_policy(premiums, payments, as_of, rules)
    got = (st.status, st.reason_code, st.months_owed, st.amount_owed_cents, st.deadline, st.grace_month,
           st.coverage_ends_on)
    assert got == expected, st.reason


def test_reasons_say_why_in_words():
    st = assess_policy(ALL, [BINDER_PAID, pay(FEB, D(2027, 1, 21), returned_on=D(2027, 1, 26), code="R01")],
                       D(2027, 1, 26))
    assert st.reason == "premium for 2027-02 returned (R01 Insufficient Funds); grace month 1 of 3"
    st = assess_policy(ALL, [], D(2026, 12, 24))
    assert st.reason == "binder for 2027-01 not paid in full by 2026-12-23: coverage does not start"
    st = assess_policy(ALL, [BINDER_PAID, pay(FEB, D(2027, 2, 25))], D(2027, 2, 26))
    assert "2027-03" in st.reason and "delinquent since 2027-01-23 (2027-02 missed)" in st.reason
    assert st.first_unpaid_month == FEB


def test_months_later_keeps_the_23rd():
    assert months_later(D(2026, 12, 23), 1) == D(2027, 1, 23)
    assert months_later(D(2026, 12, 23), 14) == D(2028, 2, 23)


def test_the_rules_are_pure_and_order_free():
    pays = [BINDER_PAID, pay(FEB, D(2027, 1, 25)), pay(MAR, D(2027, 2, 20), 5000)]
    a = assess_policy(ALL, pays, D(2027, 2, 24))
    b = assess_policy(list(reversed(ALL)), list(reversed(pays)), D(2027, 2, 24))
    assert a == b and a.status == "past_due" and a.amount_owed_cents == 5000


# =============================================================================================
# The service
# =============================================================================================

NOW = datetime(2026, 12, 1, 15, tzinfo=timezone.utc)


def _seed(sessions, keyring, member, subsidy="aptc", months=(JAN, FEB, MAR), paid=(JAN,), originate_on=D(2026, 12, 20)):
    with sessions() as s, s.begin():
        ba = BankAccount(routing_number="021000021", account_number_enc=keyring.encrypt_account("12345678"),
                         account_hash=keyring.account_hash("021000021", member), last4="5678",
                         account_type="checking", holder_name="X")
        s.add(ba)
        s.flush()
        for i, m in enumerate(months):
            p = Premium(member_id=member, member_name=f"Name {member}", plan_id="HLTH-1", coverage_month=m,
                        amount_due_cents=10000, subsidy=subsidy, binder=i == 0, due_date=due_date(m))
            s.add(p)
            s.flush()
            if m in paid:
                s.add(Payment(confirmation_id=f"{member}-{m}", channel="portal", member_id=member, plan_id="HLTH-1",
                              coverage_month=m, premium_id=p.id, amount_cents=10000, bank_account_id=ba.id,
                              submitted_at=NOW, sec_code="WEB", payment_type_code="S", originate_on=originate_on,
                              state="sent"))


def _flags(sessions, member=None):
    with sessions() as s:
        q = select(CoverageFlag).order_by(CoverageFlag.id)
        if member:
            q = q.where(CoverageFlag.member_id == member)
        return list(s.scalars(q))


def test_assess_stores_one_current_flag_per_policy_and_keeps_history(sessions, keyring, monkeypatch):
    monkeypatch.setattr(coverage_mod, "CHUNK", 2)  # several chunks of policies
    _seed(sessions, keyring, "M1")  # binder paid, then nothing
    _seed(sessions, keyring, "M2", paid=())  # binder unpaid
    _seed(sessions, keyring, "M3", paid=(JAN, FEB, MAR))
    _seed(sessions, keyring, "M4", subsidy="none")
    _seed(sessions, keyring, "M5", paid=(JAN, FEB))
    r = assess_coverage(sessions, D(2027, 1, 24))
    assert (r.policies, r.new, r.changed, r.unchanged) == (5, 5, 0, 0)
    assert r.by_status == {"past_due": 1, "not_started": 1, "ok": 2, "termination_pending": 1}
    flags = {f.member_id: f for f in _flags(sessions)}
    assert flags["M1"].status == "past_due" and flags["M1"].deadline == D(2027, 2, 23)
    assert flags["M1"].amount_owed_cents == 10000 and flags["M1"].current_key == "M1|HLTH-1"
    # the same date again: nothing new
    r = assess_coverage(sessions, D(2027, 1, 24))
    assert (r.new, r.changed, r.unchanged) == (0, 0, 5) and len(_flags(sessions)) == 5
    # a month later M1 is in grace month 2: a new current flag, the old one superseded
    r = assess_coverage(sessions, D(2027, 2, 24))
    m1 = _flags(sessions, "M1")
    assert [(f.status, f.grace_month, f.current_key, f.superseded_on) for f in m1] == [
        ("past_due", 1, None, D(2027, 2, 24)), ("past_due", 2, "M1|HLTH-1", None)]
    with sessions() as s:
        per_policy = s.execute(select(CoverageFlag.member_id, func.count()).where(CoverageFlag.current_key.is_not(None))
                               .group_by(CoverageFlag.member_id)).all()
        assert all(n == 1 for _m, n in per_policy) and len(per_policy) == 5
    # M1 pays everything: cured
    with sessions() as s, s.begin():
        for m in (FEB, MAR):
            s.add(Payment(confirmation_id=f"cure-{m}", channel="mail", member_id="M1", plan_id="HLTH-1",
                          coverage_month=m, amount_cents=10000, submitted_at=datetime(2027, 2, 25, 15, tzinfo=timezone.utc),
                          state="paid"))
    assess_coverage(sessions, D(2027, 2, 26), tz=ZoneInfo("America/New_York"))
    assert _flags(sessions, "M1")[-1].status == "ok"


def test_a_returned_payment_unpaid_in_the_database_uses_its_return_date(sessions, keyring):
    _seed(sessions, keyring, "M1", paid=(JAN, FEB), originate_on=D(2026, 12, 20))
    with sessions() as s, s.begin():
        rf = ReturnFile(sha256="0" * 64, file_name="r.ach", status="applied", processed_on=D(2027, 1, 5), returns=1,
                        nocs=0, applied=1, review_items=0)
        s.add(rf)
        s.flush()
        p = s.scalars(select(Payment).where(Payment.coverage_month == FEB)).one()
        p.state = "returned"
        from batch.models import FileEntry, NachaFile

        nf = NachaFile(file_date=D(2026, 12, 21), file_id_modifier="A", file_name="f.ach", sha256="1" * 64,
                       content_enc=b"x", entry_count=1, total_debit_cents=10000, total_credit_cents=0)
        s.add(nf)
        s.flush()
        fe = FileEntry(file_id=nf.id, batch_number=1, trace_number="011000010000001", payment_id=p.id,
                       amount_cents=10000, transaction_code="27", sec_code="WEB")
        s.add(fe)
        s.flush()
        s.add(PaymentReturn(return_file_id=rf.id, line=3, payment_id=p.id, file_entry_id=fe.id,
                            original_trace_number=fe.trace_number, return_trace_number="021000020000001",
                            return_code="R01", return_title="Insufficient Funds", category="other",
                            disposition="retry", kind="return", amount_cents=10000, returned_on=D(2027, 1, 26),
                            action="x"))
    assess_coverage(sessions, D(2027, 1, 25))
    assert _flags(sessions, "M1")[-1].status == "ok"  # counted as paid until the return
    assess_coverage(sessions, D(2027, 1, 26))
    f = _flags(sessions, "M1")[-1]
    assert (f.status, f.reason_code) == ("past_due", "premium_returned") and "R01" in f.reason


def test_cli_coverage_assess_writes_flags_and_notices(migrated_url, sessions, keyring, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACHBATCH_DATABASE__URL", migrated_url)
    monkeypatch.setenv("ACHBATCH_SECURITY__KEY", generate_secret())
    _seed(sessions, keyring, "M1")
    _seed(sessions, keyring, "M2", paid=())
    r = CliRunner().invoke(cli, ["coverage", "assess", "--date", "2027-01-24"])
    assert r.exit_code == 0, r.output
    assert "2 policies (0 ok, 1 not_started, 1 past_due, 0 termination_pending, 0 terminated)" in r.output
    assert "notices: 2 written" in r.output
    r = CliRunner().invoke(cli, ["coverage", "assess", "--date", "2027-01-24"])
    assert r.exit_code == 0 and "notices" not in r.output and "2 unchanged" in r.output
    with sessions() as s:
        assert sorted(s.scalars(select(Notice.kind))) == ["coverage_not_started", "past_due_warning"]
    assert (tmp_path / "achbatch-data" / "notices" / "manifest.csv").exists()
