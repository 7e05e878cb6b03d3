"""Federal Reserve (FedACH) banking-day calendar.

A *banking day* is a Monday-Friday on which the Federal Reserve Banks are open, i.e. a weekday that
is not a Federal Reserve holiday closure.

The Reserve Banks close on 11 holidays (reference §3.4, FED-HOL):

=====================================  ===========================================
New Year's Day                         January 1
Birthday of Martin Luther King, Jr.    3rd Monday of January
Washington's Birthday                  3rd Monday of February
Memorial Day                           last Monday of May
Juneteenth National Independence Day   June 19 -- from 2022 only (2021 fell on a Saturday)
Independence Day                       July 4
Labor Day                              1st Monday of September
Columbus Day                           2nd Monday of October
Veterans Day                           November 11
Thanksgiving Day                       4th Thursday of November
Christmas Day                          December 25
=====================================  ===========================================

Weekend rule -- this is where the Fed differs from the general federal calendar:

* a holiday on **Saturday is not moved**: the Reserve Banks are OPEN the Friday before
  (e.g. Fri 2026-07-03, Fri 2027-12-24 and Fri 2027-12-31 are banking days);
* a holiday on **Sunday closes the following Monday** (e.g. Mon 2027-07-05).

``pandas.tseries.holiday.USFederalHolidayCalendar`` and ``holidays.US()`` move Saturday holidays to
Friday and therefore wrongly close those Fridays; do not use them for banking days. The rules are
implemented here with the standard library only (pure functions, no I/O, no clock); the test suite
cross-checks them against ``holidays.financial_holidays("XFED")``.

Supported years: 1990-2100 inclusive. Any function that would need a year outside that range
(including stepping past 2100-12-31 or before 1990-01-01) raises ``ValueError``. Arguments must be
``datetime.date`` objects; ``datetime.datetime`` is rejected with ``TypeError`` (it would compare
unequal to dates and silently carry a time of day).
"""
from __future__ import annotations

from bisect import bisect_right
from datetime import date, datetime, timedelta
from functools import lru_cache

__all__ = [
    "MIN_YEAR",
    "MAX_YEAR",
    "fed_holidays",
    "is_banking_day",
    "next_banking_day",
    "previous_banking_day",
    "banking_day_on_or_before",
    "banking_day_on_or_after",
    "add_banking_days",
    "banking_days_between",
    "effective_entry_date",
]

MIN_YEAR = 1990
MAX_YEAR = 2100

_ONE_DAY = timedelta(days=1)

# Weekday numbers as returned by date.weekday().
_MON, _THU, _FRI, _SAT, _SUN = 0, 3, 4, 5, 6

JUNETEENTH_FIRST_YEAR = 2022  # first year the Reserve Banks closed for Juneteenth


# The day arithmetic below is a pure function of its arguments, asked again and again for the same
# few dates (every entry of a file, every return of a night): memoized, bounded. `typed`: a datetime
# equal to a cached date, or True for 1, is a different key, so it still reaches the type checks.
_memo = lru_cache(maxsize=8192, typed=True)


def _check_year(year: int) -> None:
    if not isinstance(year, int) or isinstance(year, bool):
        raise TypeError(f"year must be an int, got {type(year).__name__}")
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(
            f"Federal Reserve calendar supports years {MIN_YEAR}-{MAX_YEAR} only, got {year}"
        )


def _check_date(d: date) -> None:
    if isinstance(d, datetime) or not isinstance(d, date):
        raise TypeError(f"expected a datetime.date, got {type(d).__name__}")
    _check_year(d.year)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th (1-based) given weekday of a month."""
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    """The last given weekday of a month."""
    nxt = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    last = nxt - _ONE_DAY
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _actual_holidays(year: int) -> list[tuple[date, str]]:
    """The 11 (10 before 2022) holidays on their calendar dates, before the weekend rule."""
    hol = [
        (date(year, 1, 1), "New Year's Day"),
        (_nth_weekday(year, 1, _MON, 3), "Birthday of Martin Luther King, Jr."),
        (_nth_weekday(year, 2, _MON, 3), "Washington's Birthday"),
        (_last_weekday(year, 5, _MON), "Memorial Day"),
    ]
    if year >= JUNETEENTH_FIRST_YEAR:
        hol.append((date(year, 6, 19), "Juneteenth National Independence Day"))
    hol += [
        (date(year, 7, 4), "Independence Day"),
        (_nth_weekday(year, 9, _MON, 1), "Labor Day"),
        (_nth_weekday(year, 10, _MON, 2), "Columbus Day"),
        (date(year, 11, 11), "Veterans Day"),
        (_nth_weekday(year, 11, _THU, 4), "Thanksgiving Day"),
        (date(year, 12, 25), "Christmas Day"),
    ]
    return hol


@lru_cache(maxsize=None)
def _closures(year: int) -> tuple[tuple[date, str], ...]:
    """Weekday closures of the year, sorted by date (cached; immutable)."""
    out: dict[date, str] = {}
    for d, name in _actual_holidays(year):
        wd = d.weekday()
        if wd == _SAT:
            continue  # Reserve Banks open the Friday before: no closure at all
        if wd == _SUN:
            # Closed the following Monday. No fixed-date holiday falls on Dec 31, so the
            # Monday is always in the same year.
            out[d + _ONE_DAY] = f"{name} (observed)"
        else:
            out[d] = name
    return tuple(sorted(out.items()))


@lru_cache(maxsize=None)
def _closure_set(year: int) -> frozenset[date]:
    return frozenset(d for d, _ in _closures(year))


@lru_cache(maxsize=None)
def _closure_dates(year: int) -> tuple[date, ...]:
    return tuple(d for d, _ in _closures(year))


def fed_holidays(year: int) -> dict[date, str]:
    """Weekday closures of the Federal Reserve Banks in ``year``: observed date -> holiday name.

    Holidays falling on a Saturday are absent (the Fed is open the Friday before); a Sunday holiday
    appears on the following Monday, named ``"<name> (observed)"``. The dict is ordered by date and
    is a fresh copy (mutating it does not affect the calendar).
    """
    _check_year(year)
    return dict(_closures(year))


@_memo
def is_banking_day(d: date) -> bool:
    """True if ``d`` is a Monday-Friday that is not a Federal Reserve holiday closure."""
    _check_date(d)
    return d.weekday() < _SAT and d not in _closure_set(d.year)


def _step(d: date, delta: timedelta) -> date:
    d = d + delta  # OverflowError only at date.min/max, far outside the supported range
    while not is_banking_day(d):
        d = d + delta
    return d


@_memo
def next_banking_day(d: date) -> date:
    """The first banking day strictly after ``d`` (``d`` itself need not be a banking day)."""
    _check_date(d)
    return _step(d, _ONE_DAY)


@_memo
def previous_banking_day(d: date) -> date:
    """The last banking day strictly before ``d`` (``d`` itself need not be a banking day)."""
    _check_date(d)
    return _step(d, -_ONE_DAY)


def banking_day_on_or_before(d: date) -> date:
    """``d`` if it is a banking day, otherwise the last banking day before it."""
    return d if is_banking_day(d) else previous_banking_day(d)


def banking_day_on_or_after(d: date) -> date:
    """``d`` if it is a banking day, otherwise the first banking day after it."""
    return d if is_banking_day(d) else next_banking_day(d)


@_memo
def add_banking_days(d: date, n: int) -> date:
    """Move ``n`` banking days from ``d``.

    * ``n > 0``: the n-th banking day strictly after ``d`` (``add_banking_days(d, 1)`` is
      ``next_banking_day(d)``);
    * ``n < 0``: the |n|-th banking day strictly before ``d``;
    * ``n == 0``: ``banking_day_on_or_after(d)`` -- ``d`` itself if it is a banking day, otherwise
      the next banking day (rolling forward, as an ACH operator does for a non-banking date).

    ``d`` need not be a banking day. For a banking day ``d`` and any ``n``,
    ``banking_days_between(d, add_banking_days(d, n)) == n``.
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    _check_date(d)
    if n == 0:
        return banking_day_on_or_after(d)
    step = next_banking_day if n > 0 else previous_banking_day
    # Skip whole weeks first: every full 7-day span holds 5 weekdays, minus its closures, so
    # jump conservatively by 5-banking-day weeks only while far from the target.
    remaining = abs(n)
    while remaining > 10:
        weeks = (remaining - 5) // 5  # <= remaining-5 weekdays, hence <= remaining banking days
        target = d + timedelta(days=7 * weeks) * (1 if n > 0 else -1)
        _check_date(target)
        if n > 0:  # banking days in (d, target]
            counted = banking_days_between(d, target)
        else:  # banking days in [target, d)
            counted = (
                banking_days_between(target, d) - is_banking_day(d) + is_banking_day(target)
            )
        d = target
        remaining -= counted
    for _ in range(remaining):
        d = step(d)
    return d


def _weekdays_through(d: date) -> int:
    """Number of Monday-Friday dates from a fixed epoch Monday through ``d`` (monotone count)."""
    ordinal = d.toordinal()  # ordinal 1 = Monday 0001-01-01
    weeks, rem = divmod(ordinal - 1, 7)  # rem 0 = Monday ... 6 = Sunday
    return weeks * 5 + min(rem + 1, 5)


def _closures_through(d: date) -> int:
    """Number of weekday closures from 1990-01-01 through ``d`` (``d`` in the supported range)."""
    return _CUM_CLOSURES[d.year - MIN_YEAR] + bisect_right(_closure_dates(d.year), d)


_CUM_CLOSURES: list[int] = []
_acc = 0
for _y in range(MIN_YEAR, MAX_YEAR + 1):
    _CUM_CLOSURES.append(_acc)  # closures in years before _y
    _acc += len(_closures(_y))
del _acc, _y


def banking_days_between(start: date, end: date) -> int:
    """Number of banking days ``b`` with ``start < b <= end``.

    Neither date needs to be a banking day. If ``end < start`` the result is
    ``-banking_days_between(end, start)`` (so the count is antisymmetric and additive:
    ``between(a, b) + between(b, c) == between(a, c)``). ``start == end`` gives 0.
    """
    _check_date(start)
    _check_date(end)
    if end < start:
        return -banking_days_between(end, start)
    return (_weekdays_through(end) - _weekdays_through(start)) - (
        _closures_through(end) - _closures_through(start)
    )


def effective_entry_date(file_date: date) -> date:
    """Effective Entry Date for a non-same-day debit file created on ``file_date``.

    Reference §3.1 (NR2013 OR108): non-same-day debits settle one banking day after the processing
    date, so this is the next Fed banking day strictly after ``file_date`` (e.g. Wed 2026-11-25 ->
    Fri 2026-11-27, skipping Thanksgiving; Thu 2026-12-24 -> Mon 2026-12-28).
    """
    return next_banking_day(file_date)
