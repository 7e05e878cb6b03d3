"""Coverage activation (batch.rules.coverage): a binder paid on time is `pending_activation` until
its payment has cleared (settlement date + 2 banking days with no return), then `ok`; and which
change of standing the enrollment system is told of (`coverage_change`). Dates computed by hand
from the 2026-2027 calendar: weekends and Federal Reserve holidays (Christmas Fri 2026-12-25, New
Year's Day Fri 2027-01-01, Independence Day observed Mon 2027-07-05)."""
from __future__ import annotations

from datetime import date as D

import pytest

from batch.rules.premium_calendar import cleared_on as cleared_on_
from nacha.calendar import effective_entry_date
from batch.rules.coverage import (
    AT_RISK_STATUSES, COVERAGE_STATUSES, PaymentFact, PremiumFact, assess_policy, coverage_change,
)

JAN, FEB = D(2027, 1, 1), D(2027, 2, 1)
AUG = D(2027, 8, 1)


def binder(month=JAN, cents=10000):
    return PremiumFact(month, cents, "aptc", True)  # due the 23rd of the month before


def debit(month, paid_on, settled_on, cleared_on, cents=10000, returned_on=None, code=None, retry=0, pending=False):
    """A debit as policy_facts gives it; every date written out by hand, and checked against the one
    definition (the file's effective entry date, premium_calendar.cleared_on)."""
    assert effective_entry_date(paid_on) == settled_on, (paid_on, settled_on)
    assert cleared_on_(settled_on) == cleared_on, (settled_on, cleared_on)
    return PaymentFact(month, cents, paid_on, returned_on, code, cleared_on, retry, pending)


def status(premiums, payments, as_of) -> tuple[str, str]:
    st = assess_policy(premiums, payments, as_of)
    return st.status, st.reason_code


def test_the_status_list_and_what_counts_as_at_risk():
    assert COVERAGE_STATUSES == ("ok", "pending_activation", "at_risk", "not_started", "past_due",
                                 "termination_pending", "terminated")
    assert "pending_activation" not in AT_RISK_STATUSES and "ok" not in AT_RISK_STATUSES
    assert AT_RISK_STATUSES == ("at_risk", "not_started", "past_due", "termination_pending", "terminated")


def test_a_binder_not_due_yet_is_pending_activation_with_its_due_date():
    st = assess_policy([binder()], [], D(2026, 12, 1))
    assert (st.status, st.reason_code, st.deadline, st.months_owed, st.amount_owed_cents) == \
        ("pending_activation", "binder_not_due", D(2026, 12, 23), 0, 0)


# File Wed 2026-12-23 (the due date) -> settles Thu 12-24 -> + 2 banking days: Fri 12-25 is
# Christmas, 12-26/27 a weekend, so Mon 12-28 is the first and Tue 12-29 the second.
ON_DUE = debit(JAN, D(2026, 12, 23), D(2026, 12, 24), D(2026, 12, 29))


@pytest.mark.parametrize("as_of, expected", [
    (D(2026, 12, 23), ("pending_activation", "binder_uncleared")),  # paid the day it is due
    (D(2026, 12, 24), ("pending_activation", "binder_uncleared")),  # settled, not cleared
    (D(2026, 12, 25), ("pending_activation", "binder_uncleared")),  # holiday
    (D(2026, 12, 28), ("pending_activation", "binder_uncleared")),  # settlement + 1 banking day
    (D(2026, 12, 29), ("ok", "paid")),  # settlement + 2 banking days: cleared, activated
])
def test_a_binder_paid_on_its_due_date_over_christmas(as_of, expected):
    assert status([binder()], [ON_DUE], as_of) == expected


def test_the_pending_reason_names_the_clearing_day():
    st = assess_policy([binder()], [ON_DUE], D(2026, 12, 28))
    assert st.reason == ("binder for 2027-01 paid, not cleared yet (it clears on 2026-12-29): coverage is activated "
                         "once it clears")
    assert (st.months_owed, st.amount_owed_cents, st.deadline) == (0, 0, None)


def test_independence_day_observed_on_a_monday():
    # August 2027's binder, due Fri 2027-07-23, paid early: file Thu 2027-07-01 -> settles Fri 07-02;
    # + 2 banking days: 07-03/04 a weekend, Mon 07-05 the observed holiday -> Tue 07-06, Wed 07-07.
    pay = debit(AUG, D(2027, 7, 1), D(2027, 7, 2), D(2027, 7, 7))
    assert status([binder(AUG)], [pay], D(2027, 7, 6)) == ("pending_activation", "binder_uncleared")
    assert status([binder(AUG)], [pay], D(2027, 7, 7)) == ("ok", "paid")


def test_returned_before_clearing_coverage_does_not_start():
    returned = debit(JAN, D(2026, 12, 23), D(2026, 12, 24), D(2026, 12, 29), returned_on=D(2026, 12, 28), code="R01")
    assert status([binder()], [returned], D(2026, 12, 28)) == ("not_started", "binder_returned")


def test_returned_before_the_due_date_is_at_risk_then_a_replacement_waits_for_activation():
    first = debit(JAN, D(2026, 12, 10), D(2026, 12, 11), D(2026, 12, 15), returned_on=D(2026, 12, 15), code="R01")
    assert status([binder()], [first], D(2026, 12, 16)) == ("at_risk", "binder_returned")
    # replaced Fri 12-18 (settles Mon 12-21, cleared Wed 12-23): at risk until it clears (documented)
    again = debit(JAN, D(2026, 12, 18), D(2026, 12, 21), D(2026, 12, 23), retry=1)
    assert status([binder()], [first, again], D(2026, 12, 22)) == ("at_risk", "binder_returned")
    assert status([binder()], [first, again], D(2026, 12, 23)) == ("ok", "paid")


def test_a_debit_not_in_a_file_never_counts_as_cleared():
    pull = debit(JAN, D(2026, 12, 21), D(2026, 12, 22), D(2026, 12, 24), pending=True)
    assert status([binder()], [pull], D(2027, 1, 5)) == ("pending_activation", "binder_uncleared")


def test_a_mail_binder_is_active_the_day_it_is_paid():
    check = PaymentFact(JAN, 10000, D(2026, 12, 22), cleared_on=D(2026, 12, 22))
    assert status([binder()], [check], D(2026, 12, 22)) == ("ok", "paid")


def test_a_partly_cleared_binder_waits_for_the_rest():
    early = debit(JAN, D(2026, 12, 10), D(2026, 12, 11), D(2026, 12, 15), cents=4000)
    late = debit(JAN, D(2026, 12, 23), D(2026, 12, 24), D(2026, 12, 29), cents=6000)
    assert status([binder()], [early, late], D(2026, 12, 28)) == ("pending_activation", "binder_uncleared")
    assert status([binder()], [early, late], D(2026, 12, 29)) == ("ok", "paid")


def test_a_later_month_delinquent_outranks_pending_activation():
    pull = debit(JAN, D(2026, 12, 21), D(2026, 12, 22), D(2026, 12, 24), pending=True)  # never went out
    feb = PremiumFact(FEB, 10000, "none")
    assert status([binder(), feb], [pull], D(2027, 1, 25))[0] == "termination_pending"


def test_no_binder_no_activation():
    month = PremiumFact(JAN, 10000, "none")
    pay = debit(JAN, D(2026, 12, 23), D(2026, 12, 24), D(2026, 12, 29))
    assert status([month], [pay], D(2026, 12, 24)) == ("ok", "paid")


@pytest.mark.parametrize("previous, reason, new, binder_, expected", [
    (None, None, "pending_activation", True, None),
    ("pending_activation", "binder_not_due", "pending_activation", True, None),
    ("pending_activation", "binder_uncleared", "ok", True, "activated"),
    (None, None, "ok", True, "activated"),  # a mail binder: active at its first assessment
    (None, None, "ok", False, None),  # a policy without a binder: already active before achbatch knew it
    ("at_risk", "binder_returned", "ok", True, "activated"),  # the binder's replacement cleared
    ("at_risk", "premium_returned", "ok", True, "reinstated"),
    ("past_due", "premium_unpaid", "ok", True, "reinstated"),
    ("termination_pending", "premium_unpaid", "ok", True, "reinstated"),
    ("terminated", "premium_unpaid", "ok", True, "reinstated"),
    ("ok", "paid", "at_risk", True, "at_risk"),
    ("at_risk", "premium_returned", "past_due", True, "at_risk"),
    ("past_due", "premium_unpaid", "termination_pending", True, "at_risk"),
    ("past_due", "premium_unpaid", "past_due", True, None),  # a new grace month: same status, not a change
    ("pending_activation", "binder_uncleared", "not_started", True, "not_started"),
    ("termination_pending", "premium_unpaid", "terminated", True, "terminated"),
    (None, None, "terminated", False, "terminated"),
    ("ok", "paid", "ok", True, None),
])
def test_coverage_change(previous, reason, new, binder_, expected):
    assert coverage_change(previous, reason, new, binder=binder_) == expected

