"""AutoPay scheduling: one pull per unpaid premium once its draft date has come, never two."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, select

from batch.collect.autopay import schedule_autopay
from batch.store.models import AutopayMandate, BankAccount, Payment, Premium
from batch.rules.premium_calendar import due_date

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _account(s, keyring, acct="12345678", routing="011000015", status="active"):
    ba = BankAccount(routing_number=routing, account_number_enc=keyring.encrypt_account(acct),
                     account_hash=keyring.account_hash(routing, acct), last4=acct[-4:], account_type="checking",
                     holder_name="Avery Sample", status=status)
    s.add(ba)
    s.flush()
    return ba


def _premium(s, member="M1", plan="HLTH-1", month=date(2027, 1, 1), cents=41237):
    p = Premium(member_id=member, member_name="Avery Sample", plan_id=plan, coverage_month=month,
                amount_due_cents=cents, subsidy="aptc", binder=False, due_date=due_date(month))
    s.add(p)
    s.flush()
    return p


def _mandate(s, ba, member="M1", plan="HLTH-1", channel="web", status="active"):
    m = AutopayMandate(member_id=member, plan_id=plan, bank_account_id=ba.id, channel=channel, authorized_at=NOW,
                       status=status, active_key=AutopayMandate.key_for(member, plan) if status != "revoked" else None)
    s.add(m)
    s.flush()
    return m


# January 2027 coverage: due Wed 2026-12-23, settles that day, so the pull is drafted (filed) Tue 12-22.
# With 2 lead banking days it settles Mon 12-21 and is filed Fri 12-18.
@pytest.mark.parametrize("run_date, lead, created", [
    (date(2026, 12, 21), 0, 0),
    (date(2026, 12, 22), 0, 1),
    (date(2026, 12, 28), 0, 1),  # the draft date passed: created at once
    (date(2026, 12, 17), 2, 0),
    (date(2026, 12, 18), 2, 1),
])
def test_pull_is_created_on_its_draft_date(sessions, keyring, run_date, lead, created):
    with sessions() as s, s.begin():
        _mandate(s, _account(s, keyring))
        _premium(s)
    r = schedule_autopay(sessions, run_date, lead)
    assert r.created == created
    if created:
        with sessions() as s:
            p = s.scalars(select(Payment)).one()
        assert (p.channel, p.sec_code, p.payment_type_code, p.state) == ("autopay", "WEB", "R", "pending")
        assert p.amount_cents == 41237 and p.originate_on == run_date


def test_paper_mandates_are_ppd(sessions, keyring):
    with sessions() as s, s.begin():
        _mandate(s, _account(s, keyring), channel="paper")
        _premium(s)
    schedule_autopay(sessions, date(2026, 12, 22))
    with sessions() as s:
        p = s.scalars(select(Payment)).one()
    assert (p.sec_code, p.payment_type_code) == ("PPD", "")


def test_rerun_never_creates_a_second_pull(sessions, keyring):
    with sessions() as s, s.begin():
        _mandate(s, _account(s, keyring))
        _premium(s)
    assert schedule_autopay(sessions, date(2026, 12, 22)).created == 1
    again = schedule_autopay(sessions, date(2026, 12, 23))
    assert again.created == 0 and again.already_scheduled == 1
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Payment)) == 1


def test_premium_covered_by_another_payment_gets_no_pull(sessions, keyring):
    with sessions() as s, s.begin():
        ba = _account(s, keyring)
        _mandate(s, ba)
        pr = _premium(s)
        s.add(Payment(confirmation_id="PC-1", channel="portal", member_id="M1", plan_id="HLTH-1",
                      coverage_month=pr.coverage_month, amount_cents=41237, bank_account_id=ba.id, submitted_at=NOW,
                      sec_code="WEB", payment_type_code="S", originate_on=date(2026, 12, 1), state="in_file"))
    r = schedule_autopay(sessions, date(2026, 12, 22))
    assert r.created == 0 and r.covered == 1


def test_partly_paid_premium_pulls_only_what_is_owed(sessions, keyring):
    with sessions() as s, s.begin():
        ba = _account(s, keyring)
        _mandate(s, ba)
        pr = _premium(s, cents=50000)
        s.add(Payment(confirmation_id="ML-1", channel="mail", member_id="M1", plan_id="HLTH-1",
                      coverage_month=pr.coverage_month, amount_cents=20000, submitted_at=NOW, state="paid"))
    schedule_autopay(sessions, date(2026, 12, 22))
    with sessions() as s:
        pull = s.scalars(select(Payment).where(Payment.channel == "autopay")).one()
    assert pull.amount_cents == 30000


def test_returned_payment_does_not_count_as_covering(sessions, keyring):
    with sessions() as s, s.begin():
        ba = _account(s, keyring)
        _mandate(s, ba)
        pr = _premium(s)
        s.add(Payment(confirmation_id="PC-1", channel="portal", member_id="M1", plan_id="HLTH-1",
                      coverage_month=pr.coverage_month, amount_cents=41237, bank_account_id=ba.id, submitted_at=NOW,
                      sec_code="WEB", payment_type_code="S", originate_on=date(2026, 12, 1), state="returned"))
    assert schedule_autopay(sessions, date(2026, 12, 22)).created == 1


def test_no_pull_without_an_active_mandate_or_with_a_blocked_account(sessions, keyring):
    with sessions() as s, s.begin():
        _mandate(s, _account(s, keyring, "11112222"), member="M1", status="revoked")
        _premium(s, member="M1")
        _mandate(s, _account(s, keyring, "33334444", status="blocked"), member="M2")
        _premium(s, member="M2")
        _mandate(s, _account(s, keyring, "55556666"), member="M3", status="suspended")
        _premium(s, member="M3")
    r = schedule_autopay(sessions, date(2026, 12, 22))
    assert r.created == 0 and r.account_blocked == 1
