"""The set-based AutoPay pass (batch/collect/autopay.py) against the per-row path that decides every
candidate with the pure rules: random ledgers of several policies (premiums past and due, payments
of every channel and state, paid on time or late, mandates authorized around the due date with and
without an authorized amount, blocked accounts, amount-change notices), scheduled both ways on the
same data, must leave the same pulls, mandate amounts, events, review items and counts. The SQL that
stands in for a rule is also checked against the rule itself: the 'clean policy' clause against
batch.rules.coverage.assess_policy, and the authorization cut-off against debit_rules.authorized_for."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from batch.collect import debit_guard
from batch.collect.autopay import clean_policies_clause, schedule_autopay, surely_on_or_before
from batch.collect.coverage import assess_policy, policy_facts
from batch.rules import debit_rules
from batch.rules.coverage import CoverageRules
from batch.rules.premium_calendar import due_date
from batch.store.models import (
    AutopayMandate, BankAccount, Notice, Payment, PaymentEvent, Premium, ReviewItem,
)

from autopay_twins import outcome, snapshot

PLAN = "HLTH-1"
MONTHS = [date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)]
DUE_JAN = datetime(2026, 12, 23, tzinfo=timezone.utc)
STATES = ("pending", "held", "in_file", "sent", "settled", "returned", "failed")
SEC = {"portal": ("WEB", "S"), "phone": ("TEL", "S"), "autopay": ("WEB", "R")}


@st.composite
def policy(draw, i: int):
    months = draw(st.lists(st.sampled_from(MONTHS), min_size=1, max_size=5, unique=True))
    if draw(st.integers(0, 3)):  # mostly a policy with January's premium, the one due in the runs
        months.append(date(2027, 1, 1))
    months = sorted(set(months))
    binder = draw(st.booleans())
    premiums = [(m, draw(st.sampled_from([10000, 20000, 20500, 25000])), binder and k == 0,
                 draw(st.sampled_from(["none", "aptc", "connectorcare"]))) for k, m in enumerate(months)]
    mandate = None if draw(st.integers(0, 5)) == 5 else draw(st.tuples(
        st.sampled_from(["active", "active", "active", "revoked"]), st.sampled_from(["web", "paper"]),
        # hours from 2026-12-23 00:00 UTC, often within a day and a half of it
        st.one_of(st.integers(-24 * 80, 24 * 3), st.integers(-36, 36)),
        st.sampled_from([None, None, 5000, 20000, 25000, 30000])))
    payments = draw(st.lists(st.tuples(
        st.sampled_from(months + [MONTHS[0]]), st.sampled_from(["portal", "phone", "mail", "autopay"]),
        st.sampled_from(STATES), st.integers(0, 125),  # days after 2026-09-01
        st.integers(0, 23), st.sampled_from([5000, 10000, 20000, 25000])), max_size=3)
        | st.just([]))
    if draw(st.booleans()):  # a member who paid every earlier month in full a few days before its due date
        payments += [(m, "portal", "settled", (due_date(m) - date(2026, 9, 1)).days - draw(st.integers(0, 3)), 10,
                      cents) for m, cents, _b, _s in premiums if m < date(2027, 1, 1)]
    notice = draw(st.one_of(st.none(), st.tuples(st.integers(0, 22), st.sampled_from([20000, 20500, 25000, 30000]))))
    blocked = draw(st.integers(0, 5)) == 0
    return i, premiums, mandate, payments, notice, blocked


def _clear(s) -> None:
    for table in (ReviewItem, PaymentEvent, Notice, Payment, AutopayMandate, BankAccount, Premium):
        s.execute(delete(table))


def _build(sessions, keyring, policies) -> None:
    with sessions() as s, s.begin():
        _clear(s)
        for i, premiums, mandate, payments, notice, blocked in policies:
            member = f"M{i}"
            ba = BankAccount(routing_number="011000015", account_number_enc=keyring.encrypt_account(f"1234567{i}"),
                             account_hash=keyring.account_hash("011000015", f"1234567{i}"), last4=f"567{i}",
                             account_type="checking", holder_name="Avery Sample",
                             status="blocked" if blocked else "active")
            s.add(ba)
            s.flush()
            ids = {}
            for month, cents, binder, subsidy in premiums:
                p = Premium(member_id=member, member_name="Avery Sample", plan_id=PLAN, coverage_month=month,
                            amount_due_cents=cents, subsidy=subsidy, binder=binder, due_date=due_date(month))
                s.add(p)
                s.flush()
                ids[month] = p.id
            if mandate is not None:
                status, channel, hours, authorized = mandate
                s.add(AutopayMandate(member_id=member, plan_id=PLAN, bank_account_id=ba.id, channel=channel,
                                     authorized_at=DUE_JAN + timedelta(hours=hours), status=status,
                                     active_key=AutopayMandate.key_for(member, PLAN) if status == "active" else None,
                                     authorized_amount_cents=authorized))
            pulled = set()
            for j, (month, channel, state, day, hour, cents) in enumerate(payments):
                on = date(2026, 9, 1) + timedelta(days=day)
                at = datetime.combine(on, time(hour), tzinfo=timezone.utc)
                if channel == "autopay" and (month not in ids or month in pulled):
                    channel = "portal"
                if channel == "mail":
                    s.add(Payment(confirmation_id=f"X{i}-{j}", channel="mail", member_id=member, plan_id=PLAN,
                                  coverage_month=month, amount_cents=cents, submitted_at=at, state="paid",
                                  payment_type_code=""))
                    continue
                sec, ptc = SEC[channel]
                s.add(Payment(confirmation_id=f"X{i}-{j}", channel=channel, member_id=member, plan_id=PLAN,
                              coverage_month=month, amount_cents=cents, bank_account_id=ba.id, submitted_at=at,
                              sec_code=sec, payment_type_code=ptc, originate_on=on, state=state,
                              premium_id=ids.get(month),
                              autopay_premium_id=ids[month] if channel == "autopay" else None))
                if channel == "autopay":
                    pulled.add(month)
            if notice is not None and date(2027, 1, 1) in ids:
                day, cents = notice
                pid = ids[date(2027, 1, 1)]
                s.add(Notice(event_key=f"autopay_amount:{pid}:{cents}", kind="autopay_amount_change", member_id=member,
                             plan_id=PLAN, amount_owed_cents=cents, file_name="n.pdf",
                             notice_date=date(2026, 12, 1) + timedelta(days=day)))


def _undo(sessions, after: int, mandates: dict[int, int | None]) -> None:
    with sessions() as s, s.begin():
        s.execute(delete(ReviewItem).where(ReviewItem.payment_id > after))
        s.execute(delete(PaymentEvent).where(PaymentEvent.payment_id > after))
        s.execute(delete(Payment).where(Payment.id > after))
        for mid, cents in mandates.items():
            s.execute(update(AutopayMandate).where(AutopayMandate.id == mid).values(authorized_amount_cents=cents))


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(1, 6), run_day=st.integers(5, 12), lead=st.integers(0, 2),
       late=st.sampled_from(["hold", "send"]), threshold=st.sampled_from([0, 0, 500]))
def test_set_based_pass_decides_like_the_per_row_rules(sessions, keyring, data, n, run_day, lead, late, threshold):
    policies = [data.draw(policy(i)) for i in range(n)]
    _build(sessions, keyring, policies)
    run_date = date(2026, 12, 17) + timedelta(days=run_day)
    guard = debit_guard.GuardSettings(CoverageRules(payment_threshold_cents=threshold), amount_change_late=late)
    with sessions() as s:
        after = s.scalar(select(Payment.id).order_by(Payment.id.desc()).limit(1)) or 0
        mandates = dict(s.execute(select(AutopayMandate.id, AutopayMandate.authorized_amount_cents)).all())
    per_row = schedule_autopay(sessions, run_date, lead, guard, set_based=False)
    expected = snapshot(sessions, after)
    _undo(sessions, after, mandates)
    set_based = schedule_autopay(sessions, run_date, lead, guard)
    assert outcome(set_based) == outcome(per_row)
    assert snapshot(sessions, after) == expected
    # the pass really decides: whatever it did not leave to the per-row path was created or skipped by it
    assert set_based.judged <= per_row.created + per_row.not_authorized + per_row.refused + per_row.amount_held


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), n=st.integers(1, 6), as_of_day=st.integers(0, 150), threshold=st.sampled_from([0, 500]))
def test_clean_policy_clause_implies_the_rule_finds_the_policy_ok(sessions, keyring, data, n, as_of_day, threshold):
    """Where the clause says 'clean', assess_policy (the rule) must find the policy in good standing:
    'ok', or 'pending_activation' (a binder not due yet, or paid and not cleared yet: its pull is
    what activates coverage), standings in which the coverage rule allows every pull; the clause
    may leave such a policy to the rule (conservative)."""
    policies = [data.draw(policy(i)) for i in range(n)]
    _build(sessions, keyring, policies)
    as_of = date(2026, 9, 1) + timedelta(days=as_of_day)
    keys = [(f"M{i}", PLAN) for i in range(n)]
    with sessions() as s:
        conn = s.connection()
        clean = {}
        for key in keys:
            clause = clean_policies_clause(conn, key[0], key[1], as_of, threshold)
            clean[key] = bool(conn.execute(select(clause)).scalar())
        facts = policy_facts(conn, keys, ZoneInfo("America/New_York"))
    for key in keys:
        if clean[key]:
            st_ = assess_policy(*facts[key], as_of, CoverageRules(payment_threshold_cents=threshold))
            assert st_.status in ("ok", "pending_activation"), (key, st_)
            assert all(debit_rules.coverage_allows(m.coverage_month, st_.status, st_.coverage_ends_on,
                                                   st_.first_unpaid_month).ok for m in facts[key][0]), (key, st_)


def test_a_clean_policy_is_pulled_by_the_set_based_pass_and_a_late_one_by_the_rules(sessions, keyring):
    # M0: January due, nothing before; M1: December's premium paid after its due date (the rule decides).
    clean = (0, [(date(2027, 1, 1), 20000, False, "none")], ("active", "web", -24 * 30, None), [], None, False)
    late = (1, [(date(2026, 12, 1), 20000, False, "none"), (date(2027, 1, 1), 20000, False, "none")],
            ("active", "web", -24 * 60, None), [(date(2026, 12, 1), "portal", "settled", 90, 10, 20000)], None, False)
    _build(sessions, keyring, [clean, late])
    r = schedule_autopay(sessions, date(2026, 12, 22))
    assert (r.created, r.judged) == (2, 1)
    with sessions() as s:
        pulls = s.execute(select(Payment.member_id, Payment.confirmation_id, Payment.amount_cents, Payment.sec_code,
                                 Payment.payment_type_code, Payment.autopay_premium_id, Premium.id)
                          .join(Premium, Premium.id == Payment.autopay_premium_id).order_by(Payment.member_id)).all()
        amounts = s.scalars(select(AutopayMandate.authorized_amount_cents).order_by(AutopayMandate.id)).all()
    assert [(m, c, cents, sec, ptc) for m, c, cents, sec, ptc, _a, _p in pulls] == [
        ("M0", f"AP-{pulls[0][6]}", 20000, "WEB", "R"), ("M1", f"AP-{pulls[1][6]}", 20000, "WEB", "R")]
    assert amounts == [20000, 20000]  # the first pull sets the amount authorized


def test_the_pass_reports_only_the_pulls_it_created(sessions, keyring):
    """The pass counts its pulls in the database (not from rows returned to Python): payments already
    there (M1's December payment, M2's January pull) are neither counted nor listed, and the pull
    the rules create (M1's) is counted once, by the per-row path."""
    clean = (0, [(JAN, 20000, False, "none")], ("active", "web", -24 * 30, None), [], None, False)
    late = (1, [(DEC, 20000, False, "none"), (JAN, 30000, False, "none")], ("active", "web", -24 * 60, None),
            [(DEC, "portal", "settled", 90, 10, 20000)], None, False)
    done = (2, [(JAN, 25000, False, "none")], ("active", "paper", -24 * 30, None),
            [(JAN, "autopay", "pending", DEC_DUE_DAY + 28, 10, 25000)], None, False)
    _build(sessions, keyring, [clean, late, done])
    with sessions() as s:
        before = s.scalar(select(Payment.id).order_by(Payment.id.desc()).limit(1))
    r = schedule_autopay(sessions, date(2026, 12, 22))
    with sessions() as s:
        made = dict(s.execute(select(Payment.member_id, Payment.id).where(Payment.id > before)).all())
    assert sorted(made) == ["M0", "M1"]
    assert (r.created, r.created_cents, r.already_scheduled, r.judged) == (2, 20000 + 30000, 1, 1)
    assert r.pulls == [made["M0"]]  # the set-based pass's own pulls; M1's was the per-row path's


DEC, JAN = date(2026, 12, 1), date(2027, 1, 1)
DEC_DUE_DAY = (due_date(DEC) - date(2026, 9, 1)).days  # payment day offsets (from 2026-09-01) of 2026-11-23


def _one(premiums, mandate=("active", "web", -24 * 30, None), payments=(), notice=None):
    return (0, premiums, mandate, list(payments), notice, False)


EDGES = {
    # name: (policy, judged by the rules (not the set-based pass), created)
    "clean": (_one([(JAN, 20000, False, "none")]), 0, 1),
    "above the authorized amount": (_one([(JAN, 20500, False, "none")], ("active", "web", -24 * 30, 20000)), 1, 0),
    "at the authorized amount": (_one([(JAN, 20000, False, "none")], ("active", "web", -24 * 30, 20000)), 0, 1),
    "December paid on its due date": (_one([(DEC, 10000, False, "none"), (JAN, 20000, False, "none")],
                                           payments=[(DEC, "portal", "settled", DEC_DUE_DAY, 10, 10000)]), 0, 1),
    "December paid a day late": (_one([(DEC, 10000, False, "none"), (JAN, 20000, False, "none")],
                                      payments=[(DEC, "portal", "settled", DEC_DUE_DAY + 1, 10, 10000)]), 1, 1),
    "December paid in part": (_one([(DEC, 10000, False, "none"), (JAN, 20000, False, "none")],
                                   payments=[(DEC, "portal", "settled", DEC_DUE_DAY - 5, 10, 5000)]), 1, 1),
    "December returned, then paid on time": (
        _one([(DEC, 10000, False, "none"), (JAN, 20000, False, "none")],
             payments=[(DEC, "portal", "returned", DEC_DUE_DAY - 9, 10, 10000),
                       (DEC, "portal", "settled", DEC_DUE_DAY - 5, 10, 10000)]), 1, 1),
    "December by mail the day before (UTC)": (
        _one([(DEC, 10000, False, "none"), (JAN, 20000, False, "none")],
             payments=[(DEC, "mail", "settled", DEC_DUE_DAY - 1, 23, 10000)]), 0, 1),
    "December by mail on its due date": (
        _one([(DEC, 10000, False, "none"), (JAN, 20000, False, "none")],
             payments=[(DEC, "mail", "settled", DEC_DUE_DAY, 1, 10000)]), 1, 1),
    "binder unpaid in October": (_one([(date(2026, 10, 1), 10000, True, "none"), (JAN, 20000, False, "none")]), 1, 0),
    "authorized 09:00 UTC on the due date": (_one([(JAN, 20000, False, "none")], ("active", "web", 9, None)), 0, 1),
    "authorized 11:00 UTC on the due date": (_one([(JAN, 20000, False, "none")], ("active", "web", 11, None)), 1, 1),
    "authorized the day after": (_one([(JAN, 20000, False, "none")], ("active", "web", 24 + 11, None)), 1, 0),
    "two premiums due in the run": (_one([(JAN, 20000, False, "none"), (date(2027, 2, 1), 20000, False, "none")]),
                                    0, 1),
}


@pytest.mark.parametrize("name", list(EDGES))
def test_edges_of_the_set_based_pass(sessions, keyring, name):
    """Each edge either left to the rules or pulled by the pass, and the same outcome both ways."""
    pol, judged, created = EDGES[name]
    _build(sessions, keyring, [pol])
    run_date = date(2026, 12, 22)
    with sessions() as s:
        after = s.scalar(select(Payment.id).order_by(Payment.id.desc()).limit(1)) or 0
        mandates = dict(s.execute(select(AutopayMandate.id, AutopayMandate.authorized_amount_cents)).all())
    per_row = schedule_autopay(sessions, run_date, set_based=False)
    expected = snapshot(sessions, after)
    _undo(sessions, after, mandates)
    r = schedule_autopay(sessions, run_date)
    assert (r.judged, r.created) == (judged, created)
    assert outcome(r) == outcome(per_row) and snapshot(sessions, after) == expected


ZONES = ["America/New_York", "America/Los_Angeles", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kolkata",
         "Pacific/Chatham", "UTC"]


@given(day=st.dates(date(2020, 1, 1), date(2035, 12, 31)), seconds=st.integers(-3 * 86400, 3 * 86400),
       zone=st.sampled_from(ZONES))
def test_the_authorization_cut_off_never_admits_a_mandate_signed_after_the_due_date(day, seconds, zone):
    cut = surely_on_or_before(day)
    instant = cut + timedelta(seconds=seconds)
    if instant < cut:
        local_day = instant.astimezone(ZoneInfo(zone)).date()
        assert local_day <= day
        assert debit_rules.authorized_for(day, local_day).ok


@pytest.mark.parametrize("zone", ZONES)
def test_the_cut_off_is_the_due_day_10_00_utc(zone):
    d = date(2026, 12, 23)
    assert surely_on_or_before(d) == datetime(2026, 12, 23, 10, 0, tzinfo=timezone.utc)
    # one second before it, still the due date or earlier in every zone, Kiritimati (UTC+14) included
    assert (surely_on_or_before(d) - timedelta(seconds=1)).astimezone(ZoneInfo(zone)).date() <= d
