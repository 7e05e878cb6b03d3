"""Premium due dates and AutoPay draft dates: pure functions of their inputs (no clock).

Premiums are due the 23rd of the month before coverage (ref §5.1, MAHC). AutoPay withdraws on the
due date (DESIGN.md): the pull settles on the last Federal Reserve banking day on or before the
23rd, earlier by `autopay_lead_days` banking days when configured; the file carrying it is built
one banking day before that settlement date, because a non-same-day debit settles on the next
banking day after the file date (nacha.calendar.effective_entry_date, ref §3.1). A debit has
cleared two banking days after it settled (`cleared_on`, ref §2.2).
"""
from __future__ import annotations

import re
from datetime import date

from nacha.calendar import add_banking_days, banking_day_on_or_before, previous_banking_day

__all__ = [
    "CLEARING_BANKING_DAYS", "DUE_DAY", "autopay_draft_date", "autopay_settlement_date", "cleared_on",
    "coverage_month_of", "due_date", "parse_coverage_month",
]

DUE_DAY = 23
# Returns for insufficient or uncollected funds, a closed or an unknown account (the 2-banking-day
# codes) reach us by the opening of business on settlement + 2 banking days (ref §2.2, NR2013 OR127).
CLEARING_BANKING_DAYS = 2
_YYYY_MM = re.compile(r"^([0-9]{4})-([0-9]{2})$")


def parse_coverage_month(text: str) -> date:
    """'YYYY-MM' -> the first day of that month. ValueError with a plain message otherwise."""
    m = _YYYY_MM.match(text)
    if not m:
        raise ValueError(f"coverage month must be YYYY-MM, got {text!r}")
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12:
        raise ValueError(f"coverage month must be YYYY-MM with a month 01-12, got {text!r}")
    if year < 1:
        raise ValueError(f"coverage month year out of range: {text!r}")
    return date(year, month, 1)


def coverage_month_of(d: date) -> date:
    return date(d.year, d.month, 1)


def due_date(coverage_month: date) -> date:
    """The 23rd of the month before `coverage_month` (which must be the first of a month).
    The calendar date, not moved to a banking day: the member's deadline is the date itself."""
    if coverage_month.day != 1:
        raise ValueError(f"coverage month must be the first day of a month, got {coverage_month}")
    if coverage_month.month == 1:
        return date(coverage_month.year - 1, 12, DUE_DAY)
    return date(coverage_month.year, coverage_month.month - 1, DUE_DAY)


def autopay_settlement_date(due: date, lead_banking_days: int = 0) -> date:
    """The day an AutoPay pull settles: the last banking day on or before `due`, then
    `lead_banking_days` banking days earlier."""
    if lead_banking_days < 0:
        raise ValueError("lead_banking_days must not be negative")
    settle = banking_day_on_or_before(due)
    if lead_banking_days:
        settle = add_banking_days(settle, -lead_banking_days)
    return settle


def autopay_draft_date(due: date, lead_banking_days: int = 0) -> date:
    """The file (origination) date of an AutoPay pull for a premium due on `due`: the banking day
    before its settlement date, so that effective_entry_date(draft) == settlement date.
    A run on or after this date originates the pull (a run that finds it passed does so at once)."""
    return previous_banking_day(autopay_settlement_date(due, lead_banking_days))


def cleared_on(settlement_date: date) -> date:
    """The day a debit that settled on `settlement_date` has cleared: settlement + 2 banking days.

    The one definition, for coverage standing and coverage activation alike. Returns for
    insufficient or uncollected funds and for closed, frozen or unknown accounts (the 2-banking-day
    codes: R01, R02, R03, R04, R09, ...) arrive by the opening of business on the settlement date
    plus two banking days (ref §2.2, NR2013 OR127 footnote *), so a debit with no return by then
    counts as cleared ON that date (a run that day has already applied the morning's returns).
    Unauthorized returns (R05, R07, R10, R11, R51) can come up to 60 days later; a debit that has
    cleared can still be returned, and a return still un-counts it.

    The settlement date of a debit is the effective entry date of the file that carried it
    (`nacha.calendar.effective_entry_date(file_date)`); a mail payment (check or money order already
    received) has no settlement and clears the day it is paid.
    """
    return add_banking_days(settlement_date, CLEARING_BANKING_DAYS)
