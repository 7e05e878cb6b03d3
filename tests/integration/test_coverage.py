"""Coverage standing: the pure rules (batch.collect.coverage.assess_policy) as a table of cases around the
23rd, weekends and Federal Reserve holidays, binder and later months, returns after a payment was
counted as paid; then the service on SQLite and PostgreSQL (one current flag per policy, history)."""
from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import event, func, select

import batch.collect.coverage as coverage_mod
from batch.collect.autopay import schedule_autopay
from batch.collect.coverage import CoverageRules, PaymentFact, PremiumFact, assess_coverage, assess_policy, months_later
from batch.store.crypto import generate_secret
from batch.store.models import (
    AutopayMandate,
    BankAccount,
    CoverageFlag,
    FileEntry,
    NachaFile,
    Notice,
    Payment,
    PaymentReturn,
    Premium,
    ReturnFile,
)
from batch.collect.origination import Company, Limits, originate
from batch.rules.premium_calendar import cleared_on, due_date
from batch.collect.returns import process_return_file
from jobs.cli import cli
from nacha.calendar import effective_entry_date, fed_holidays, is_banking_day

from test_returns_simbank import SimBank, originals

D = date
JAN, FEB, MAR, APR = D(2027, 1, 1), D(2027, 2, 1), D(2027, 3, 1), D(2027, 4, 1)


def prem(month, cents=10000, subsidy="aptc", binder=False):
    return PremiumFact(month, cents, subsidy, binder, due_date(month))


AUTO = object()


def pay(month, paid_on, cents=10000, returned_on=None, code=None, cleared=AUTO, retry=0, pending=False):
    """A debit originated on `paid_on`; by default in that day's file, so it clears on
    cleared_on(effective_entry_date(paid_on)), as batch.collect.coverage.policy_facts computes it."""
    if cleared is AUTO:
        cleared = cleared_on(effective_entry_date(paid_on))
    return PaymentFact(month, cents, paid_on, returned_on, code, cleared, retry, pending)


def mail(month, paid_on, cents=10000):
    """A check or money order received: cleared the day it is paid."""
    return PaymentFact(month, cents, paid_on, cleared_on=paid_on)


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
    ("binder unpaid on its due date: not due yet, coverage not activated", ALL, [], D(2026, 12, 23), R,
     ("pending_activation", "binder_not_due", 0, 0, D(2026, 12, 23), 0, None)),
    ("binder unpaid the day after", ALL, [], D(2026, 12, 24), R,
     ("not_started", "binder_unpaid", 1, 10000, None, 0, None)),
    ("binder paid early (Sun 12-20, settles Mon 12-21): not cleared yet, coverage not activated", ALL,
     [BINDER_PAID], D(2026, 12, 21), R, ("pending_activation", "binder_uncleared", 0, 0, None, 0, None)),
    ("... activated once cleared: settlement Mon 12-21 + 2 banking days = Wed 12-23", ALL, [BINDER_PAID],
     D(2026, 12, 23), R, ("ok", "paid", 0, 0, None, 0, None)),
    ("binder paid on the 23rd itself: on time, not cleared", ALL, [pay(JAN, D(2026, 12, 23))], D(2026, 12, 24), R,
     ("pending_activation", "binder_uncleared", 0, 0, None, 0, None)),
    ("... settled Thu 12-24, Fri 12-25 a Fed holiday: not cleared on Mon 12-28", ALL, [pay(JAN, D(2026, 12, 23))],
     D(2026, 12, 28), R, ("pending_activation", "binder_uncleared", 0, 0, None, 0, None)),
    ("... cleared and activated on Tue 12-29", ALL, [pay(JAN, D(2026, 12, 23))], D(2026, 12, 29), R,
     ("ok", "paid", 0, 0, None, 0, None)),
    ("binder paid by mail: cleared the day it is paid, activated at once", ALL, [mail(JAN, D(2026, 12, 22))],
     D(2026, 12, 22), R, ("ok", "paid", 0, 0, None, 0, None)),
    ("binder AutoPay pull not in a file yet: not cleared", ALL, [pay(JAN, D(2026, 12, 18), pending=True)],
     D(2026, 12, 28), R, ("pending_activation", "binder_uncleared", 0, 0, None, 0, None)),
    ("binder paid a day late: coverage does not start", ALL, [pay(JAN, D(2026, 12, 24))], D(2026, 12, 28), R,
     ("not_started", "binder_unpaid", 0, 0, None, 0, None)),
    ("binder returned after counting as paid", ALL, [pay(JAN, D(2026, 12, 20), returned_on=D(2026, 12, 28),
                                                         code="R01")], D(2026, 12, 28), R,
     ("not_started", "binder_returned", 1, 10000, None, 0, None)),
    ("binder return not processed yet on the date assessed", ALL,
     [pay(JAN, D(2026, 12, 20), returned_on=D(2026, 12, 28), code="R01")], D(2026, 12, 27), R,
     ("ok", "paid", 0, 0, None, 0, None)),
    ("binder returned, re-presented after the due date: still not started, owed until it clears", ALL,
     [pay(JAN, D(2026, 12, 20), returned_on=D(2026, 12, 28), code="R01"), pay(JAN, D(2026, 12, 30), retry=1)],
     D(2027, 1, 4), R, ("not_started", "binder_returned", 1, 10000, None, 0, None)),
    ("... settled Thu 12-31, cleared Tue 01-05 (Jan 1 a Fed holiday): paid since, still not started", ALL,
     [pay(JAN, D(2026, 12, 20), returned_on=D(2026, 12, 28), code="R01"), pay(JAN, D(2026, 12, 30), retry=1)],
     D(2027, 1, 5), R, ("not_started", "binder_returned", 0, 0, None, 0, None)),
    ("binder partly paid", ALL, [pay(JAN, D(2026, 12, 20), 6000)], D(2026, 12, 24), R,
     ("not_started", "binder_partial", 1, 4000, None, 0, None)),
    ("binder short by less than the threshold counts as paid", ALL, [pay(JAN, D(2026, 12, 20), 9950)],
     D(2026, 12, 24), CoverageRules(payment_threshold_cents=100), ("ok", "paid", 0, 0, None, 0, None)),
    ("binder paid in two parts by the 23rd: the second not cleared", ALL,
     [pay(JAN, D(2026, 12, 10), 4000), pay(JAN, D(2026, 12, 23), 6000)],
     D(2026, 12, 24), R, ("pending_activation", "binder_uncleared", 0, 0, None, 0, None)),
    ("... both cleared (the second on Tue 12-29)", ALL,
     [pay(JAN, D(2026, 12, 10), 4000), pay(JAN, D(2026, 12, 23), 6000)],
     D(2026, 12, 29), R, ("ok", "paid", 0, 0, None, 0, None)),
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
    ("... its re-presentment originated two banking days later does not cure it while in flight", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 1, 21), returned_on=D(2027, 1, 26), code="R01"),
      pay(FEB, D(2027, 1, 28), retry=1)],
     D(2027, 1, 28), R, ("past_due", "premium_returned", 1, 10000, D(2027, 2, 23), 1, None)),
    ("... nor on its settlement + 1 banking day (Mon 2027-02-01)", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 1, 21), returned_on=D(2027, 1, 26), code="R01"),
      pay(FEB, D(2027, 1, 28), retry=1)],
     D(2027, 2, 1), R, ("past_due", "premium_returned", 1, 10000, D(2027, 2, 23), 1, None)),
    ("... it cures once cleared: settlement (Fri 01-29) + 2 banking days", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 1, 21), returned_on=D(2027, 1, 26), code="R01"),
      pay(FEB, D(2027, 1, 28), retry=1)],
     D(2027, 2, 2), R, ("ok", "paid", 0, 0, None, 0, None)),
    ("... and not before it is originated", ALL,
     [BINDER_PAID, pay(FEB, D(2027, 1, 21), returned_on=D(2027, 1, 26), code="R01"),
      pay(FEB, D(2027, 1, 28), retry=1)],
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
    # issue 16: after a (retroactive) termination only the months up to the coverage end are owed
    ("grace period over: terminated at the end of grace month 1, owing that month only", ALL, [BINDER_PAID],
     D(2027, 4, 24), R, ("terminated", "premium_unpaid", 1, 10000, None, 4, D(2027, 2, 28))),
    ("ConnectorCare has the same grace period", CC, [BINDER_PAID], D(2027, 2, 24), R,
     ("past_due", "premium_unpaid", 2, 20000, D(2027, 3, 23), 2, None)),
    # 45 CFR 156.270(d): grace only after a full month's premium paid in the benefit year
    ("APTC, binder of the year before, nothing paid in the new year: no grace", policy(months=(D(2026, 12, 1), JAN, FEB)),
     [pay(D(2026, 12, 1), D(2026, 11, 20))], D(2026, 12, 24), R,
     ("termination_pending", "premium_unpaid", 1, 10000, D(2027, 1, 23), 1, None)),
    ("... terminated back to the last month paid (2026-12-31)", policy(months=(D(2026, 12, 1), JAN, FEB)),
     [pay(D(2026, 12, 1), D(2026, 11, 20))], D(2027, 1, 24), R,
     ("terminated", "premium_unpaid", 0, 0, None, 2, D(2026, 12, 31))),
    ("ConnectorCare likewise", policy("connectorcare", months=(D(2026, 12, 1), JAN, FEB)),
     [pay(D(2026, 12, 1), D(2026, 11, 20))], D(2026, 12, 24), R,
     ("termination_pending", "premium_unpaid", 1, 10000, D(2027, 1, 23), 1, None)),
    ("APTC, the year's first month only partly paid: no grace", policy(binder=False),
     [pay(JAN, D(2026, 12, 20), 9000)], D(2026, 12, 24), R,
     ("termination_pending", "premium_partial", 1, 1000, D(2027, 1, 23), 1, None)),
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
     ("terminated", "premium_unpaid", 1, 10000, None, 2, D(2027, 2, 28))),
    # -- unsubsidized members: no grace period -------------------------------------------------------
    ("unsubsidized: straight to termination pending", NONE, [BINDER_PAID], D(2027, 1, 24), R,
     ("termination_pending", "premium_unpaid", 1, 10000, D(2027, 2, 23), 1, None)),
    ("unsubsidized: terminated back to the last month paid, owing nothing after it", NONE, [BINDER_PAID],
     D(2027, 2, 24), R, ("terminated", "premium_unpaid", 0, 0, None, 2, D(2027, 1, 31))),
    ("... and a month after the end paid in part is not owed either", NONE,
     [BINDER_PAID, pay(FEB, D(2027, 1, 20), 4000)], D(2027, 2, 24), R,
     ("terminated", "premium_partial", 0, 0, None, 2, D(2027, 1, 31))),
    ("unsubsidized with a configured grace month", NONE, [BINDER_PAID], D(2027, 1, 24),
     CoverageRules(grace_months_unsubsidized=2), ("past_due", "premium_unpaid", 1, 10000, D(2027, 2, 23), 1, None)),
    # -- no binder (a renewing member), holidays ---------------------------------------------------
    ("no binder on file: a missed month is delinquent, not 'not started' (no month paid in 2027: no grace)",
     policy(binder=False), [], D(2026, 12, 24), R,
     ("termination_pending", "premium_unpaid", 1, 10000, D(2027, 1, 23), 1, None)),
    ("no binder on file, Jan paid: a missed Feb gets the APTC grace period", policy(binder=False),
     [pay(JAN, D(2026, 12, 20))], D(2027, 1, 24), R,
     ("past_due", "premium_unpaid", 1, 10000, D(2027, 2, 23), 1, None)),
    ("binder due on Thanksgiving (Fed holiday): paid online that day is on time, not cleared yet",
     [prem(D(2028, 12, 1), binder=True)], [pay(D(2028, 12, 1), D(2028, 11, 23))], D(2028, 11, 24), R,
     ("pending_activation", "binder_uncleared", 0, 0, None, 0, None)),
    ("... settles Fri 11-24; + 2 banking days over the weekend: not cleared on Mon 11-27",
     [prem(D(2028, 12, 1), binder=True)], [pay(D(2028, 12, 1), D(2028, 11, 23))], D(2028, 11, 27), R,
     ("pending_activation", "binder_uncleared", 0, 0, None, 0, None)),
    ("... cleared, coverage activated, on Tue 11-28", [prem(D(2028, 12, 1), binder=True)],
     [pay(D(2028, 12, 1), D(2028, 11, 23))], D(2028, 11, 28), R, ("ok", "paid", 0, 0, None, 0, None)),
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


# -- A returned premium stays at risk until a payment for it has cleared ----------------------------
# A debit clears on its settlement date + 2 banking days (batch.rules.premium_calendar.cleared_on; ref §2.2).
# After a return, a month's other payments count only from the day they cleared.

def test_cleared_on_is_settlement_plus_two_banking_days():
    assert cleared_on(D(2027, 2, 23)) == D(2027, 2, 25)  # Tue -> Thu
    assert cleared_on(D(2027, 2, 26)) == D(2027, 3, 2)  # Fri -> Tue, across the weekend
    assert cleared_on(D(2027, 5, 28)) == D(2027, 6, 2)  # Fri -> Wed: Memorial Day (Mon 05-31) closed
    assert cleared_on(D(2026, 12, 23)) == D(2026, 12, 28)  # Wed -> Mon: Christmas (Fri) and the weekend
    assert cleared_on(D(2026, 12, 31)) == D(2027, 1, 5)  # Thu -> Tue: New Year's Day


FEB_PAID = pay(FEB, D(2027, 1, 20))
PAID = [BINDER_PAID, FEB_PAID]  # Jan and Feb paid and cleared long ago; Mar due Tue 2027-02-23
# March's AutoPay pull: drafted Mon 02-22, settles Tue 02-23 (the due date) ...
PULL_MAR = pay(MAR, D(2027, 2, 22))
# ... returned R01 the day after the due date; re-presented Fri 02-26: settles Mon 03-01, clears Wed 03-03
RET_MAR = pay(MAR, D(2027, 2, 22), returned_on=D(2027, 2, 24), code="R01")
RETRY_MAR = pay(MAR, D(2027, 2, 26), retry=1)
# drafted Fri 02-19 (lead days), settled Mon 02-22, returned on the due date; re-presented Thu 02-25:
# settles Fri 02-26, clears Tue 03-02 (across the weekend)
RET_ON_DUE = pay(MAR, D(2027, 2, 19), returned_on=D(2027, 2, 23), code="R01")
RETRY_FRI = pay(MAR, D(2027, 2, 25), retry=1)
# settled Thu 02-18, returned Fri 02-19, before the due date; re-presented on the due date: settles
# Wed 02-24, clears Fri 02-26
RET_EARLY = pay(MAR, D(2027, 2, 17), returned_on=D(2027, 2, 19), code="R01")
RETRY_ON_DUE = pay(MAR, D(2027, 2, 23), retry=1)
# the re-presentment returned too, before it cleared; the second settles Fri 03-05, clears Tue 03-09
RETRY_RETURNED = pay(MAR, D(2027, 2, 26), returned_on=D(2027, 3, 2), code="R01", retry=1)
RETRY_2 = pay(MAR, D(2027, 3, 4), retry=2)
# Memorial Day: June due Sun 2027-05-23; pull settled Fri 05-21, returned Tue 05-25; re-presented Thu
# 05-27: settles Fri 05-28, + 1 banking day Tue 06-01, + 2 Wed 06-02
MAY, JUN = D(2027, 5, 1), D(2027, 6, 1)
SUMMER = [prem(MAY, binder=True), prem(JUN)]
SUMMER_PAID = pay(MAY, D(2027, 4, 20))
RET_JUN = pay(JUN, D(2027, 5, 20), returned_on=D(2027, 5, 25), code="R01")
RETRY_JUN = pay(JUN, D(2027, 5, 27), retry=1)
# the binder (due Wed 2026-12-23): settled Thu 12-17, returned Fri 12-18; re-presented Tue 12-22,
# settles Wed 12-23 (its due date), clears Mon 12-28 (Christmas Friday and the weekend)
BRET = pay(JAN, D(2026, 12, 16), returned_on=D(2026, 12, 18), code="R01")
BRETRY = pay(JAN, D(2026, 12, 22), retry=1)
# partial: $60 paid in the portal Wed 02-10 (settled Thu 02-11, cleared Tue 02-16: Presidents Day),
# the $40 rest by AutoPay, returned; its re-presentment clears Wed 03-03
P60 = pay(MAR, D(2027, 2, 10), 6000)
P40_RET = pay(MAR, D(2027, 2, 22), 4000, returned_on=D(2027, 2, 24), code="R01")
P40_RETRY = pay(MAR, D(2027, 2, 26), 4000, retry=1)

PD1 = ("past_due", "premium_returned", 1, 10000, D(2027, 3, 23), 1)  # March in grace month 1
OK = ("ok", "paid", 0, 0, None, 0)

# (id, premiums, payments, as_of, rules, expected: status, reason_code, months_owed, amount_owed, deadline,
#  grace_month). Each of these fails under the old rule (a payment counts from the day it was made).
CLEARING_CASES = [
    # -- a later month returned after its due date: delinquent until a replacement has cleared -------
    ("returned the day after the due date: on the day its re-presentment is originated, past due", ALL,
     PAID + [RET_MAR, RETRY_MAR], D(2027, 2, 26), R, PD1),
    ("... on its settlement date", ALL, PAID + [RET_MAR, RETRY_MAR], D(2027, 3, 1), R, PD1),
    ("... on settlement + 1 banking day", ALL, PAID + [RET_MAR, RETRY_MAR], D(2027, 3, 2), R, PD1),
    ("unsubsidized: termination pending until it clears", NONE, PAID + [RET_MAR, RETRY_MAR], D(2027, 3, 2), R,
     ("termination_pending", "premium_returned", 1, 10000, D(2027, 3, 23), 1)),
    ("settled on a Friday: still past due on the Saturday", ALL, PAID + [RET_ON_DUE, RETRY_FRI],
     D(2027, 2, 27), R, PD1),
    ("... and on Monday, settlement + 1 banking day", ALL, PAID + [RET_ON_DUE, RETRY_FRI], D(2027, 3, 1), R, PD1),
    ("settled Fri before Memorial Day: past due on the holiday", SUMMER, [SUMMER_PAID, RET_JUN, RETRY_JUN],
     D(2027, 5, 31), R, ("past_due", "premium_returned", 1, 10000, D(2027, 6, 23), 1)),
    ("... and on Tue 06-01, settlement + 1 banking day", SUMMER, [SUMMER_PAID, RET_JUN, RETRY_JUN],
     D(2027, 6, 1), R, ("past_due", "premium_returned", 1, 10000, D(2027, 6, 23), 1)),
    ("a member's own portal payment after the return counts only once cleared", ALL,
     PAID + [RET_MAR, pay(MAR, D(2027, 2, 25))], D(2027, 3, 1), R, PD1),
    ("a re-presentment still not in a file past the day it would have cleared does not count", ALL,
     PAID + [RET_MAR, pay(MAR, D(2027, 2, 26), retry=1, pending=True)], D(2027, 3, 10), R, PD1),
    ("a replacement not known to clear (cleared_on None) never counts", ALL,
     PAID + [RET_MAR, pay(MAR, D(2027, 2, 26), cleared=None)], D(2027, 3, 10), R, PD1),
    # -- the re-presentment returned too ----------------------------------------------------------
    ("re-presentment returned too: past due until the second one has cleared", ALL,
     PAID + [RET_MAR, RETRY_RETURNED, RETRY_2], D(2027, 3, 8), R, PD1),
    # -- partial payment, and the rest returned ---------------------------------------------------------
    ("the $40 rest returned: $60 cleared before keeps counting, $40 owed", ALL, PAID + [P60, P40_RET, P40_RETRY],
     D(2027, 3, 2), R, ("past_due", "premium_returned", 1, 4000, D(2027, 3, 23), 1)),
    ("$60 paid the same day as the pull, not cleared at the return: $100 owed", ALL,
     PAID + [pay(MAR, D(2027, 2, 22), 6000), P40_RET], D(2027, 2, 24), R, PD1),
    ("... $40 owed once the $60 has cleared", ALL, PAID + [pay(MAR, D(2027, 2, 22), 6000), P40_RET],
     D(2027, 2, 25), R, ("past_due", "premium_returned", 1, 4000, D(2027, 3, 23), 1)),
    # -- at_risk: returned, no delinquency yet ------------------------------------------------------------
    ("returned before its due date: at risk, the due date as deadline", ALL, PAID + [RET_EARLY, RETRY_ON_DUE],
     D(2027, 2, 19), R, ("at_risk", "premium_returned", 1, 10000, D(2027, 2, 23), 0)),
    ("... still at risk on the due date, its re-presentment going out that day", ALL,
     PAID + [RET_EARLY, RETRY_ON_DUE], D(2027, 2, 23), R, ("at_risk", "premium_returned", 1, 10000, D(2027, 2, 23), 0)),
    ("... past due the day after: a later month's replacement counts once cleared", ALL,
     PAID + [RET_EARLY, RETRY_ON_DUE], D(2027, 2, 24), R,
     ("past_due", "premium_returned", 1, 10000, D(2027, 3, 23), 1)),
    ("... past due on settlement + 1 banking day (Thu 02-25)", ALL, PAID + [RET_EARLY, RETRY_ON_DUE], D(2027, 2, 25), R,
     ("past_due", "premium_returned", 1, 10000, D(2027, 3, 23), 1)),
    ("returned on the due date itself: at risk that day", ALL, PAID + [RET_ON_DUE, RETRY_FRI], D(2027, 2, 23), R,
     ("at_risk", "premium_returned", 1, 10000, D(2027, 2, 23), 0)),
    ("at risk with a partial: $60 cleared, the $40 rest returned", ALL,
     PAID + [P60, pay(MAR, D(2027, 2, 17), 4000, returned_on=D(2027, 2, 19), code="R01")], D(2027, 2, 22), R,
     ("at_risk", "premium_returned", 1, 4000, D(2027, 2, 23), 0)),
    ("unsubsidized: at risk too before the due date", NONE, PAID + [RET_EARLY], D(2027, 2, 20), R,
     ("at_risk", "premium_returned", 1, 10000, D(2027, 2, 23), 0)),
    # -- the binder ----------------------------------------------------------------------------------------
    ("binder returned before its due date: at risk, the due date as deadline", ALL, [BRET, BRETRY],
     D(2026, 12, 18), R, ("at_risk", "binder_returned", 1, 10000, D(2026, 12, 23), 0)),
    ("... on its due date, the re-presentment settling that day", ALL, [BRET, BRETRY], D(2026, 12, 23), R,
     ("at_risk", "binder_returned", 1, 10000, D(2026, 12, 23), 0)),
    ("... after it, replaced by the due date but not cleared: coverage starts, at risk, no deadline", ALL,
     [BRET, BRETRY], D(2026, 12, 24), R, ("at_risk", "binder_returned", 1, 10000, None, 0)),
    ("... on Sunday 12-27, after Christmas (Fri) and the weekend", ALL, [BRET, BRETRY], D(2026, 12, 27), R,
     ("at_risk", "binder_returned", 1, 10000, None, 0)),
    ("binder returned, no replacement: at risk until its due date", ALL, [BRET], D(2026, 12, 23), R,
     ("at_risk", "binder_returned", 1, 10000, D(2026, 12, 23), 0)),
    ("binder at risk, and a later month returned before its due date: both owed", ALL,
     [BRET, BRETRY, pay(FEB, D(2026, 12, 21), returned_on=D(2026, 12, 23), code="R01")], D(2026, 12, 24), R,
     ("at_risk", "binder_returned", 2, 20000, D(2027, 1, 23), 0)),
]

# Cases whose outcome the clearing rule must leave alone (they hold under the old rule too).
UNCHANGED_CASES = [
    ("returned the day after the due date, re-presentment scheduled: past due", ALL,
     PAID + [RET_MAR, RETRY_MAR], D(2027, 2, 24), R, PD1),
    ("re-presentment returned before it cleared: still past due", ALL, PAID + [RET_MAR, RETRY_RETURNED, RETRY_2],
     D(2027, 3, 3), R, PD1),
    ("a pull settling on the due date, never returned: paid on time, the day after, before it clears", ALL,
     PAID + [PULL_MAR], D(2027, 2, 24), R, OK),
    ("... and once it has cleared (Thu 02-25)", ALL, PAID + [PULL_MAR], D(2027, 2, 25), R, OK),
    ("the re-presentment cures on settlement + 2 banking days (Wed 03-03)", ALL, PAID + [RET_MAR, RETRY_MAR],
     D(2027, 3, 3), R, OK),
    ("... across the weekend: Tue 03-02", ALL, PAID + [RET_ON_DUE, RETRY_FRI], D(2027, 3, 2), R, OK),
    ("... across Memorial Day: Wed 06-02", SUMMER, [SUMMER_PAID, RET_JUN, RETRY_JUN], D(2027, 6, 2), R, OK),
    ("... the second re-presentment once cleared (Tue 03-09)", ALL, PAID + [RET_MAR, RETRY_RETURNED, RETRY_2],
     D(2027, 3, 9), R, OK),
    ("... the $40 re-presentment once cleared", ALL, PAID + [P60, P40_RET, P40_RETRY], D(2027, 3, 3), R, OK),
    ("a return arriving after the replacement cleared: a portal payment cleared Fri 02-19 keeps counting", ALL,
     PAID + [pay(MAR, D(2027, 2, 16)), RET_MAR], D(2027, 2, 24), R, OK),
    ("a check received the day before the return counts (a mail payment clears the day it is paid)", ALL,
     PAID + [mail(MAR, D(2027, 2, 23)), RET_MAR], D(2027, 2, 24), R, OK),
    ("a check received after the return cures at once", ALL, PAID + [RET_MAR, mail(MAR, D(2027, 2, 25))],
     D(2027, 2, 25), R, OK),
    ("before the return is processed the pull counts as paid", ALL, PAID + [RET_MAR, RETRY_MAR], D(2027, 2, 23), R,
     OK),
    ("a pull returned before the due date, assessed the day before", ALL, PAID + [RET_EARLY], D(2027, 2, 18), R, OK),
    ("at risk until the re-presentment clears (Fri 02-26): then paid", ALL, PAID + [RET_EARLY, RETRY_ON_DUE],
     D(2027, 2, 26), R, OK),
    ("a pull stopped before it reached the bank is no return: a portal payment counts from its day", ALL,
     PAID + [pay(MAR, D(2027, 2, 17), returned_on=D(2027, 2, 18)), pay(MAR, D(2027, 2, 23))], D(2027, 2, 24), R,
     OK),
    ("binder re-presentment cleared Mon 12-28 (Christmas Friday, the weekend): paid", ALL, [BRET, BRETRY],
     D(2026, 12, 28), R, OK),
    ("binder re-presentment returned too: coverage does not start", ALL,
     [BRET, pay(JAN, D(2026, 12, 22), returned_on=D(2026, 12, 24), code="R01", retry=1)], D(2026, 12, 24), R,
     ("not_started", "binder_returned", 1, 10000, None, 0)),
    ("binder returned, no replacement, the day after its due date: not started", ALL, [BRET], D(2026, 12, 24), R,
     ("not_started", "binder_returned", 1, 10000, None, 0)),
    ("binder returned, replaced after its due date: not started", ALL,
     [BRET, pay(JAN, D(2026, 12, 24))], D(2026, 12, 30), R, ("not_started", "binder_returned", 0, 0, None, 0)),
    ("a delinquent month outranks a month at risk", ALL, [BINDER_PAID, RET_EARLY], D(2027, 2, 19), R,
     ("past_due", "premium_unpaid", 1, 10000, D(2027, 2, 23), 1)),
]


def _got(st):
    return (st.status, st.reason_code, st.months_owed, st.amount_owed_cents, st.deadline, st.grace_month)


@pytest.mark.parametrize("name, premiums, payments, as_of, rules, expected", CLEARING_CASES + UNCHANGED_CASES,
                         ids=[c[0] for c in CLEARING_CASES + UNCHANGED_CASES])
def test_a_returned_premium_stays_at_risk_until_a_payment_has_cleared(name, premiums, payments, as_of, rules,
                                                                      expected):
    st = assess_policy(premiums, payments, as_of, rules)
    assert _got(st) == expected, st.reason


def test_returned_reasons_name_the_return_and_the_scheduled_re_presentment():
    days = [D(2027, 2, 24), D(2027, 2, 25), D(2027, 2, 26), D(2027, 3, 1), D(2027, 3, 2)]
    reasons = {assess_policy(ALL, PAID + [RET_MAR, RETRY_MAR], d).reason for d in days}
    # the same words from the return until the re-presentment clears (a changed reason is a new flag)
    assert reasons == {"premium for 2027-03 returned (R01 Insufficient Funds); re-presentment 1 scheduled for "
                       "2027-02-26; grace month 1 of 3"}
    st = assess_policy(NONE, PAID + [RET_MAR, RETRY_MAR], D(2027, 2, 25))
    assert st.reason == ("premium for 2027-03 returned (R01 Insufficient Funds); re-presentment 1 scheduled for "
                         "2027-02-26; no grace period")
    st = assess_policy(ALL, PAID + [RET_EARLY, RETRY_ON_DUE], D(2027, 2, 19))
    assert st.reason == ("premium for 2027-03 returned (R01 Insufficient Funds); re-presentment 1 scheduled for "
                         "2027-02-23; at risk until a replacement clears")
    assert st.first_unpaid_month == MAR and st.subsidy == "aptc"
    st = assess_policy(ALL, [BRET, BRETRY], D(2026, 12, 24))
    assert st.reason == ("binder for 2027-01 returned (R01 Insufficient Funds); re-presentment 1 scheduled for "
                         "2026-12-22; at risk until a replacement clears")
    # the second re-presentment, after the first came back too
    st = assess_policy(ALL, PAID + [RET_MAR, RETRY_RETURNED, RETRY_2], D(2027, 3, 2))
    assert st.reason == ("premium for 2027-03 returned (R01 Insufficient Funds); re-presentment 2 scheduled for "
                         "2027-03-04; grace month 1 of 3")
    # no re-presentment: the return alone
    st = assess_policy(ALL, PAID + [RET_MAR], D(2027, 2, 24))
    assert st.reason == "premium for 2027-03 returned (R01 Insufficient Funds); grace month 1 of 3"


def _uncleared(p: PaymentFact) -> PaymentFact:
    return PaymentFact(p.coverage_month, p.amount_cents, p.paid_on, p.returned_on, p.return_code, None, 0, True)


def test_without_a_return_clearing_decides_only_activation():
    """Every case of the table without a return: the same standing with no payment cleared, except
    that a policy whose binder is paid and would be active (`ok`) waits for activation instead."""
    n = activation = 0
    for _name, premiums, payments, as_of, rules, _expected in CASES + UNCHANGED_CASES:
        if any(p.return_code for p in payments):
            continue
        n += 1
        cleared = assess_policy(premiums, payments, as_of, rules)
        uncleared = assess_policy(premiums, [_uncleared(p) for p in payments], as_of, rules)
        if cleared.status in ("ok", "pending_activation") and any(m.binder for m in premiums) \
                and cleared.reason_code != "binder_not_due":
            activation += 1
            assert (uncleared.status, uncleared.reason_code) == ("pending_activation", "binder_uncleared"), _name
        else:
            assert uncleared == cleared, _name
    assert n > 30 and activation > 5


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
COMPANY = Company("Health Connector", "9000000001", "9000000001", "011000015", "FEDERAL RESERVE BANK", "011000015")


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
        from batch.store.models import FileEntry, NachaFile

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
    assert "2 policies (0 ok, 0 pending_activation, 0 at_risk, 1 not_started, 1 past_due, 0 termination_pending, 0 terminated)" in r.output
    assert "notices: 2 written" in r.output
    r = CliRunner().invoke(cli, ["coverage", "assess", "--date", "2027-01-24"])
    assert r.exit_code == 0 and "notices" not in r.output and "2 unchanged" in r.output
    with sessions() as s:
        assert sorted(s.scalars(select(Notice.kind))) == ["coverage_not_started", "past_due_warning"]
    assert (tmp_path / "achbatch-data" / "notices" / "manifest.csv").exists()


# =============================================================================================
# A returned premium stays at risk until a payment for it has cleared: the database path
# =============================================================================================

def _mandate_member(sessions, keyring, member, subsidy):
    """Feb 2027 (the binder) paid by check in January; March billed, due Tue 2027-02-23; AutoPay on."""
    with sessions() as s, s.begin():
        ba = BankAccount(routing_number="026009593", account_number_enc=keyring.encrypt_account("7300012345"),
                         account_hash=keyring.account_hash("026009593", "7300012345"), last4="2345",
                         account_type="checking", holder_name="MEMBER ONE")
        s.add(ba)
        s.flush()
        for m in (FEB, MAR):
            s.add(Premium(member_id=member, member_name="Member One", plan_id="HLTH-1", coverage_month=m,
                          amount_due_cents=10000, subsidy=subsidy, binder=m == FEB, due_date=due_date(m)))
        s.add(Payment(confirmation_id=f"{member}-check", channel="mail", member_id=member, plan_id="HLTH-1",
                      coverage_month=FEB, amount_cents=10000, state="paid",
                      submitted_at=datetime(2027, 1, 10, 15, tzinfo=timezone.utc)))
        s.add(AutopayMandate(member_id=member, plan_id="HLTH-1", bank_account_id=ba.id, channel="web",
                             authorized_at=datetime(2026, 12, 1, 15, tzinfo=timezone.utc), status="active",
                             active_key=AutopayMandate.key_for(member, "HLTH-1")))


@pytest.mark.parametrize("subsidy, delinquent", [("aptc", "past_due"), ("none", "termination_pending")])
def test_the_audit_path_a_returned_autopay_pull_is_delinquent_until_its_re_presentment_clears(
        sessions, keyring, tmp_path, subsidy, delinquent):
    """An AutoPay pull settling on the due date, returned R01 after it, re-presented: the flag says
    delinquent, naming R01 and the scheduled re-presentment, from the return until the
    re-presentment's settlement + 2 banking days; then ok."""
    member = "M700001"
    _mandate_member(sessions, keyring, member, subsidy)
    outbox = tmp_path / "outbox"

    def originate_on(d):
        r = originate(sessions, keyring, COMPANY, Limits(), d, outbox, file_time="2300")
        return {o.member_id: o for f in r.files for o in originals(f.path).values()}

    def flag(d):
        assess_coverage(sessions, d)
        return _flags(sessions, member)[-1]

    assert schedule_autopay(sessions, D(2027, 2, 22)).created == 1  # March's pull, drafted Mon 02-22
    sent = originate_on(D(2027, 2, 22))  # settles Tue 02-23, the due date
    assert effective_entry_date(D(2027, 2, 22)) == due_date(MAR) == D(2027, 2, 23)
    assert flag(D(2027, 2, 23)).status == "ok"  # on its way by the due date: paid on time

    bank_file = tmp_path / "returns.ach"
    bank_file.write_text(SimBank().returns([(sent[member], "R01")], D(2027, 2, 24)))
    out = process_return_file(sessions, keyring, bank_file, D(2027, 2, 24))
    assert (out.returns_applied, out.retries_scheduled) == (1, 1)
    with sessions() as s:
        retry = s.scalars(select(Payment).where(Payment.channel == "retry")).one()
    assert (retry.originate_on, retry.retry_number) == (D(2027, 2, 26), 1)

    words = ("premium for 2027-03 returned (R01 Insufficient Funds); re-presentment 1 scheduled for 2027-02-26; "
             + ("grace month 1 of 3" if subsidy == "aptc" else "no grace period"))
    first = flag(D(2027, 2, 24))  # the day the return is processed
    assert (first.status, first.reason_code, first.reason) == (delinquent, "premium_returned", words)
    assert (first.amount_owed_cents, first.months_owed, first.deadline) == (10000, 1, D(2027, 3, 23))
    assert flag(D(2027, 2, 25)).id == first.id  # the day after the return: the same flag, unchanged
    assert set(originate_on(D(2027, 2, 26))) == {member}  # the re-presentment goes out: settles Mon 03-01
    for d in (D(2027, 2, 26), D(2027, 2, 27), D(2027, 3, 1), D(2027, 3, 2)):  # not cleared before Wed 03-03
        f = flag(d)
        assert (f.id, f.status, f.reason) == (first.id, delinquent, words), d
    cured = flag(D(2027, 3, 3))
    assert (cured.status, cured.reason_code, cured.amount_owed_cents) == ("ok", "paid", 0)


def test_a_pull_returned_before_its_due_date_is_at_risk_in_the_database(sessions, keyring, tmp_path):
    member = "M700002"
    _mandate_member(sessions, keyring, member, "aptc")
    assert schedule_autopay(sessions, D(2027, 2, 17), lead_banking_days=3).created == 1  # drafted Wed 02-17
    r = originate(sessions, keyring, COMPANY, Limits(), D(2027, 2, 17), tmp_path / "outbox", file_time="2300")
    sent = {o.member_id: o for f in r.files for o in originals(f.path).values()}
    bank_file = tmp_path / "returns.ach"
    bank_file.write_text(SimBank().returns([(sent[member], "R01")], D(2027, 2, 19)))
    process_return_file(sessions, keyring, bank_file, D(2027, 2, 19))  # re-presentment Tue 02-23
    assess_coverage(sessions, D(2027, 2, 19))
    f = _flags(sessions, member)[-1]
    assert (f.status, f.reason_code, f.deadline, f.amount_owed_cents, f.months_owed) == \
           ("at_risk", "premium_returned", D(2027, 2, 23), 10000, 1)
    assert f.reason == ("premium for 2027-03 returned (R01 Insufficient Funds); re-presentment 1 scheduled for "
                        "2027-02-23; at risk until a replacement clears")


def test_policy_facts_loads_a_chunk_with_one_set_of_queries(sessions, engine, keyring):
    ny = ZoneInfo("America/New_York")
    keys = []
    with sessions() as s, s.begin():
        nf = NachaFile(file_date=D(2027, 2, 22), file_id_modifier="A", file_name="f.ach", sha256="1" * 64,
                       content_enc=b"x", entry_count=1, total_debit_cents=10000, total_credit_cents=0)
        s.add(nf)
        s.flush()
        for i in range(12):
            member = f"M8{i:05d}"
            keys.append((member, "HLTH-1"))
            ba = BankAccount(routing_number="021000021", account_number_enc=keyring.encrypt_account("12345678"),
                             account_hash=keyring.account_hash("021000021", member), last4="5678",
                             account_type="checking", holder_name="X")
            s.add(ba)
            s.flush()
            s.add(Premium(member_id=member, member_name="X", plan_id="HLTH-1", coverage_month=MAR,
                          amount_due_cents=10000, subsidy="aptc", binder=False, due_date=due_date(MAR)))
            common = dict(channel="portal", member_id=member, plan_id="HLTH-1", coverage_month=MAR,
                          bank_account_id=ba.id, submitted_at=NOW, sec_code="WEB", payment_type_code="S")
            late = Payment(confirmation_id=f"{member}-late", amount_cents=6000, originate_on=D(2027, 2, 19),
                           state="returned", **common)
            s.add(late)
            s.flush()
            fe = FileEntry(file_id=nf.id, batch_number=1, trace_number=f"0110000100{i:05d}", payment_id=late.id,
                           amount_cents=6000, transaction_code="27", sec_code="WEB")
            s.add(fe)
            s.flush()
            s.add(PaymentReturn(return_file_id=_return_file(s, i).id, line=3, payment_id=late.id, file_entry_id=fe.id,
                                original_trace_number=fe.trace_number, return_trace_number=f"0210000200{i:05d}",
                                return_code="R01", return_title="Insufficient Funds", category="other",
                                disposition="retry", kind="return", amount_cents=6000, returned_on=D(2027, 2, 24),
                                action="x"))
            common["channel"] = "retry"
            s.add(Payment(confirmation_id=f"{member}-retry", amount_cents=6000, originate_on=D(2027, 2, 26),
                          state="pending", retry_of_id=late.id, retry_number=1, **common))
            s.add(Payment(confirmation_id=f"{member}-check", channel="mail", member_id=member, plan_id="HLTH-1",
                          coverage_month=MAR, amount_cents=4000, state="paid",
                          submitted_at=datetime(2027, 2, 25, 3, tzinfo=timezone.utc)))  # 22:00 on 02-24 in Boston
    statements = []

    def count(_conn, _cursor, sql, *_a):
        statements.append(sql)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with sessions() as s:
            conn = s.connection()
            statements.clear()  # whatever opening the connection ran
            few = coverage_mod.policy_facts(conn, keys[:2], ny)
            n_few = len(statements)
            statements.clear()
            many = coverage_mod.policy_facts(conn, keys + [("NOBODY", "HLTH-1")], ny)
            n_many = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # premiums, payments with their files, returns, stops and cancellations: whatever the chunk's size
    assert n_few == n_many == 4, [q[:50] for q in statements]
    assert set(few) == set(keys[:2]) and many[("NOBODY", "HLTH-1")] == ([], [])
    premiums, payments = many[keys[3]]
    assert premiums == [PremiumFact(MAR, 10000, "aptc", False, D(2027, 2, 23))]
    by = {p.amount_cents if not p.retry else -1: p for p in payments}
    late, retry, check = by[6000], by[-1], by[4000]
    # originated late: settled on the effective entry date of its file (Tue 02-23), not of its day
    assert (late.paid_on, late.cleared_on, late.returned_on, late.return_code, late.pending) == \
           (D(2027, 2, 19), D(2027, 2, 25), D(2027, 2, 24), "R01", False)
    assert (retry.paid_on, retry.cleared_on, retry.retry_number, retry.pending) == \
           (D(2027, 2, 26), D(2027, 3, 3), 1, True)
    assert (check.paid_on, check.cleared_on, check.pending, check.retry) == (D(2027, 2, 24), D(2027, 2, 24), False,
                                                                             False)
    assert all(p.payment_id is not None for p in payments)
    # the debit being decided can be left out
    with sessions() as s:
        facts = coverage_mod.policy_facts(s.connection(), [keys[3]], ny,
                                          exclude_payment_ids=frozenset({retry.payment_id}))
    assert sorted(p.amount_cents for p in facts[keys[3]][1]) == [4000, 6000]
    # and the rule over them: $4,000 by check cleared, the $6,000 returned, its re-presentment in flight
    # (no month paid in full in 2027 before March: no APTC grace period, 45 CFR 156.270(d))
    st = assess_policy(premiums, payments, D(2027, 3, 2))
    assert (st.status, st.amount_owed_cents) == ("termination_pending", 6000)


def _return_file(s, i):
    rf = ReturnFile(sha256=f"{i:064d}", file_name=f"r{i}.ach", status="applied", processed_on=D(2027, 2, 24),
                    returns=1, nocs=0, applied=1, review_items=0)
    s.add(rf)
    s.flush()
    return rf
