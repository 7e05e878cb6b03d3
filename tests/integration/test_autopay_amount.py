"""Recurring debits of varying amount (issue 16; NACHA Rules 2.3.2.6): the mandate records the amount
the member authorized (its first pull's); a pull above it needs an `autopay_amount_change` notice at
least 10 calendar days before its settlement date, after which the authorized amount is the new one;
without that notice `origination.amount_change_late` decides: `hold` (default: no pull, a review
item) or `send` (pulled, recorded, the notice goes out at once). At or below it: no notice needed."""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from batch.collect.autopay import schedule_autopay
from batch.collect.debit_guard import GuardSettings
from batch.collect.notices import issue_notices
from batch.rules import debit_rules as R
from batch.store.models import AutopayMandate, Notice, PaymentEvent

from test_money_rules import PLAN, night  # noqa: F401  (fixture)
from test_returns import cli_env  # noqa: F401  (fixture: settings from the environment)

JAN_DRAFT = date(2026, 12, 22)  # Jan premiums due Wed 12-23: drafted Tue 12-22, settle 12-23
FEB_DRAFT = date(2027, 1, 21)  # Feb premiums due Sat 01-23: settle Fri 01-22, drafted Thu 01-21
MAR_DRAFT = date(2027, 2, 22)  # Mar premiums due Tue 02-23: drafted Mon 02-22


def test_the_rule():
    settles = date(2027, 1, 22)
    assert R.amount_change(10000, None, settles, None, None) == R.AmountDecision(
        "pull", "first pull: its amount is the amount authorized", 10000)
    assert R.amount_change(10000, 10000, settles, None, None).action == "pull"
    assert R.amount_change(4000, 10000, settles, None, None).action == "pull"  # a remainder: no notice
    ok = R.amount_change(12000, 10000, settles, date(2027, 1, 12), 12000)  # exactly 10 calendar days
    assert (ok.action, ok.new_authorized) == ("pull_noticed", 12000)
    assert R.amount_change(12000, 10000, settles, date(2027, 1, 13), 12000).action == "hold"  # 9 days
    assert R.amount_change(12000, 10000, settles, date(2027, 1, 2), 11000).action == "hold"  # noticed less
    late = R.amount_change(12000, 10000, settles, None, None, late="send")
    assert (late.action, late.new_authorized) == ("send_late", 12000)


def _mandate(night, member):
    with night.sessions() as s:
        return s.scalars(select(AutopayMandate).where(AutopayMandate.member_id == member)).one()


def test_a_higher_premium_is_pulled_only_after_ten_days_notice(night, tmp_path):  # noqa: F811
    night.premiums(f"V1,Vary One,{PLAN},2027-01,100.00,none,no", f"V1,Vary One,{PLAN},2027-02,120.00,none,no",
                   f"V2,Vary Two,{PLAN},2027-01,100.00,none,no", f"V2,Vary Two,{PLAN},2027-02,120.00,none,no",
                   f"V2,Vary Two,{PLAN},2027-03,90.00,none,no")
    night.mandate("V1", authorized="2026-12-01T09:00:00-05:00")
    night.mandate("V2", authorized="2026-12-01T09:00:00-05:00", account="4004005678")
    # January: the first pull; its amount is what the member authorized
    r = schedule_autopay(night.sessions, JAN_DRAFT)
    assert r.created == 2 and r.amount_held == 0
    assert _mandate(night, "V1").authorized_amount_cents == 10000
    # V1 is told of February's $120.00 on 12-28 (26 days before its settlement on 01-22); V2 is not
    notices = tmp_path / "notices"
    issue_notices(night.sessions, notices, date(2026, 12, 28))
    with night.sessions() as s, s.begin():
        rows = s.scalars(select(Notice).where(Notice.kind == "autopay_amount_change")).all()
        assert sorted((n.member_id, n.amount_owed_cents, n.deadline) for n in rows) == [
            ("V1", 12000, date(2027, 1, 23)), ("V2", 12000, date(2027, 1, 23))]
        for n in rows:  # V2's notice: as if it had gone out too late (a notice on 01-15, 7 days before)
            if n.member_id == "V2":
                n.notice_date = date(2027, 1, 15)
    html = (notices / rows[0].file_name).read_text()
    assert "$120.00" in html and "$100.00" in html and "at least 10 days" in html
    r = schedule_autopay(night.sessions, FEB_DRAFT)
    assert (r.created, r.created_cents, r.amount_held) == (1, 12000, 1)
    (v1_jan, v1_feb), (v2_jan, v2_feb) = night.payments("V1"), night.payments("V2")
    assert (v1_feb.amount_cents, v1_feb.state) == (12000, "pending")
    assert _mandate(night, "V1").authorized_amount_cents == 12000  # updated after the notice
    # V2: held, never originated, for review; the authorized amount stays
    assert (v2_feb.amount_cents, v2_feb.state) == (12000, "failed")
    assert _mandate(night, "V2").authorized_amount_cents == 10000
    (item,) = night.reviews("autopay_amount_change")
    assert (item.payment_id, item.amount_cents, item.expected_amount_cents) == (v2_feb.id, 12000, 10000)
    assert "could not be noticed 10 calendar days before its settlement on 2027-01-22" in item.detail
    with night.sessions() as s:
        assert s.scalars(select(PaymentEvent.event).where(PaymentEvent.payment_id == v2_feb.id)).all() == [
            "amount_change_held"]
    assert schedule_autopay(night.sessions, FEB_DRAFT).created == 0  # re-run: nothing twice
    # March's $90.00 is below what V2 authorized: pulled, no notice needed
    r = schedule_autopay(night.sessions, MAR_DRAFT)
    assert r.created == 1 and night.payments("V2")[-1].amount_cents == 9000


def test_an_imported_authorized_amount_holds_a_pull_above_it(night, tmp_path):  # noqa: F811
    """The AutoPay CSV's `authorized_amount_cents` is the authorized amount from the start: the very
    first pull above it needs the 10 days' notice (here none: held for review, no debit); at or below
    it the pull goes as before; a mandate imported without it is set by its first pull."""
    night.premiums(f"W1,Wide One,{PLAN},2027-01,120.00,none,no", f"W2,Wide Two,{PLAN},2027-01,90.00,none,no",
                   f"W3,Wide Three,{PLAN},2027-01,120.00,none,no")
    header = ("member_id,plan_id,routing_number,account_number,account_type,account_holder,authorized_at,channel,"
              "authorized_amount_cents")
    night.csv("autopay", header, f"W1,{PLAN},011000015,4004001234,checking,W1 Holder,2026-12-01,web,10000",
              f"W2,{PLAN},011000015,4004005678,checking,W2 Holder,2026-12-01,web,10000",
              f"W3,{PLAN},011000015,4004009999,checking,W3 Holder,2026-12-01,web,")
    assert (_mandate(night, "W1").authorized_amount_cents, _mandate(night, "W3").authorized_amount_cents) == (
        10000, None)
    r = schedule_autopay(night.sessions, JAN_DRAFT)
    assert (r.created, r.created_cents, r.amount_held) == (2, 9000 + 12000, 1)
    (w1,), (w2,), (w3,) = night.payments("W1"), night.payments("W2"), night.payments("W3")
    assert (w1.amount_cents, w1.state) == (12000, "failed")  # held: never originated
    assert (w2.amount_cents, w2.state) == (9000, "pending")  # below the authorized amount: no notice needed
    assert (w3.amount_cents, w3.state) == (12000, "pending")  # no amount imported: the first pull sets it
    assert _mandate(night, "W1").authorized_amount_cents == 10000  # unchanged by a held pull
    assert _mandate(night, "W2").authorized_amount_cents == 10000  # a smaller pull does not lower it
    assert _mandate(night, "W3").authorized_amount_cents == 12000
    (item,) = night.reviews("autopay_amount_change")
    assert (item.payment_id, item.amount_cents, item.expected_amount_cents) == (w1.id, 12000, 10000)


def test_an_imported_authorized_amount_is_noticed_ahead(night, tmp_path):  # noqa: F811
    """With the amount imported before any pull, the advance notice goes out in time and the pull
    above it is then allowed (and raises the authorized amount)."""
    night.premiums(f"W4,Wide Four,{PLAN},2027-01,120.00,none,no")
    night.csv("autopay", "member_id,plan_id,routing_number,account_number,account_type,account_holder,"
              "authorized_at,channel,authorized_amount_cents",
              f"W4,{PLAN},011000015,4004001234,checking,W4 Holder,2026-12-01,web,10000")
    res = issue_notices(night.sessions, tmp_path / "n", date(2026, 12, 2))  # 21 days before settlement
    assert res.by_kind == {"autopay_amount_change": 1}
    html = res.files[0].read_text()
    assert "$120.00" in html and "$100.00" in html
    r = schedule_autopay(night.sessions, JAN_DRAFT)
    assert (r.created, r.created_cents, r.amount_held) == (1, 12000, 0)
    assert _mandate(night, "W4").authorized_amount_cents == 12000


def test_send_accepts_the_risk_records_it_and_notices_at_once(night, tmp_path):  # noqa: F811
    night.premiums(f"V3,Vary Three,{PLAN},2027-01,100.00,none,no", f"V3,Vary Three,{PLAN},2027-02,150.00,none,no")
    night.mandate("V3", authorized="2026-12-01T09:00:00-05:00")
    schedule_autopay(night.sessions, JAN_DRAFT)
    r = schedule_autopay(night.sessions, FEB_DRAFT, guard=GuardSettings(amount_change_late="send"))
    assert (r.created, r.amount_sent_late, r.amount_held) == (1, 1, 0)
    feb = night.payments("V3")[-1]
    assert (feb.amount_cents, feb.state) == (15000, "pending")
    assert _mandate(night, "V3").authorized_amount_cents == 15000
    with night.sessions() as s:
        assert s.scalars(select(PaymentEvent.event).where(PaymentEvent.payment_id == feb.id)).all() == [
            "amount_sent_late"]
    res = issue_notices(night.sessions, tmp_path / "n", FEB_DRAFT)
    assert res.by_kind == {"autopay_amount_change": 1}
    assert "on or shortly before" in res.files[0].read_text()
    assert issue_notices(night.sessions, tmp_path / "n", FEB_DRAFT).created == 0  # once


@pytest.mark.parametrize("late", ["hold", "send"])
def test_the_setting_is_documented_and_checked(late):
    from batch.config import Settings

    assert Settings().origination.amount_change_late == "hold"
    assert Settings.model_validate({"origination": {"amount_change_late": late}}).origination.amount_change_late == late
    with pytest.raises(Exception):
        Settings.model_validate({"origination": {"amount_change_late": "maybe"}})


def test_migration_0011_up_and_down(db_url):
    """0011 adds autopay_mandates.authorized_amount_cents, the notice kind autopay_amount_change and
    return_files.warnings; downgrade drops them (deleting those notices), keeping everything else."""
    from datetime import datetime, timezone

    from sqlalchemy import inspect, text
    from sqlalchemy.exc import IntegrityError

    from batch.store.crypto import Keyring, generate_secret
    from batch.store.db import head_revision, make_engine, upgrade
    from test_db import downgrade_to

    t0 = datetime(2026, 2, 1, 12, tzinfo=timezone.utc)
    notice = ("INSERT INTO notices (id, event_key, kind, member_id, plan_id, amount_owed_cents, file_name, "
              "notice_date, created_at) VALUES (:i, :k, :kind, 'M1', 'P1', 100, 'n.html', :d, :t)")
    upgrade(db_url, "0010_key_ids")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO bank_accounts (id, routing_number, account_number_enc, account_hash, last4, "
                "account_type, holder_name, status, validation_result, created_at, updated_at, key_id) VALUES "
                "(100, '011000015', :b, :h, '6789', 'checking', 'A B', 'active', 'unvalidated', :t, :t, 'k')"),
                {"b": Keyring([generate_secret()]).encrypt_account("123456789"), "h": "f" * 64, "t": t0})
            conn.execute(text(
                "INSERT INTO autopay_mandates (id, member_id, plan_id, bank_account_id, channel, authorized_at, "
                "status, active_key, created_at, updated_at) VALUES (1, 'M1', 'P1', 100, 'web', :t, 'active', "
                "'M1|P1', :t, :t)"), {"t": t0})
            conn.execute(text(notice), {"i": 1, "k": "a", "kind": "past_due_warning", "d": date(2026, 2, 2), "t": t0})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # not a kind before 0011
            conn.execute(text(notice), {"i": 2, "k": "b", "kind": "autopay_amount_change", "d": date(2026, 2, 2),
                                        "t": t0})
        assert upgrade(db_url, "0011_rules16_amount_warnings")[1] == "0011_rules16_amount_warnings"
        with engine.begin() as conn:
            assert conn.execute(text("SELECT authorized_amount_cents FROM autopay_mandates")).scalar() is None
            conn.execute(text("INSERT INTO return_files (id, sha256, file_name, status, processed_on, returns, nocs, "
                              "applied, review_items, created_at, warnings) VALUES (1, :h, 'r.ach', 'applied', :d, "
                              "1, 0, 1, 0, :t, '[]')"), {"h": "b" * 64, "d": date(2026, 2, 2), "t": t0})
            conn.execute(text("UPDATE autopay_mandates SET authorized_amount_cents = 12345"))
            conn.execute(text(notice), {"i": 2, "k": "b", "kind": "autopay_amount_change", "d": date(2026, 2, 2),
                                        "t": t0})
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the CHECK still holds
            conn.execute(text(notice), {"i": 3, "k": "c", "kind": "nonsense", "d": date(2026, 2, 2), "t": t0})
        downgrade_to(db_url, "0010_key_ids")
        with engine.connect() as conn:
            assert "authorized_amount_cents" not in {c["name"] for c in inspect(conn).get_columns("autopay_mandates")}
            assert "warnings" not in {c["name"] for c in inspect(conn).get_columns("return_files")}
            assert conn.execute(text("SELECT file_name FROM return_files")).scalar() == "r.ach"
            assert conn.execute(text("SELECT id, kind FROM notices")).all() == [(1, "past_due_warning")]
            assert conn.execute(text("SELECT status FROM autopay_mandates")).scalar() == "active"
        assert upgrade(db_url)[1] == head_revision()  # and up again
    finally:
        engine.dispose()
