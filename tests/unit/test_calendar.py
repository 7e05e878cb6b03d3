"""Federal Reserve banking-day calendar (nacha/calendar.py).

Test vectors come from the domain reference §3.4 (FED-HOL / richmondfed 2026-2027 table,
holidays 0.109 XFED, Fed K.8 2020-2024 and moov-io/base time_test.go historic values).
"""
from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples import examples

from nacha.calendar import (
    MAX_YEAR,
    MIN_YEAR,
    add_banking_days,
    banking_day_on_or_after,
    banking_day_on_or_before,
    banking_days_between,
    effective_entry_date,
    fed_holidays,
    is_banking_day,
    next_banking_day,
    previous_banking_day,
)

D = date.fromisoformat

# ---------------------------------------------------------------------------------------------
# Reference §3.4 "Weekday closures 2026-2028"
# ---------------------------------------------------------------------------------------------

CLOSURES = {
    2026: [
        "2026-01-01", "2026-01-19", "2026-02-16", "2026-05-25", "2026-06-19",
        "2026-09-07", "2026-10-12", "2026-11-11", "2026-11-26", "2026-12-25",
    ],
    2027: [
        "2027-01-01", "2027-01-18", "2027-02-15", "2027-05-31", "2027-07-05",
        "2027-09-06", "2027-10-11", "2027-11-11", "2027-11-25",
    ],
    2028: [
        "2028-01-17", "2028-02-21", "2028-05-29", "2028-06-19", "2028-07-04",
        "2028-09-04", "2028-10-09", "2028-11-23", "2028-12-25",
    ],
}

# Holidays on a Saturday: the Reserve Banks are OPEN the Friday before.
SATURDAY_HOLIDAY_FRIDAYS = ["2026-07-03", "2027-06-18", "2027-12-24", "2027-12-31", "2028-11-10"]

HISTORIC_BANKING_DAYS = ["2021-06-18", "2021-12-24", "2021-12-31", "2023-11-10"]
HISTORIC_CLOSURES = ["2021-07-05", "2022-06-20", "2022-12-26", "2023-01-02"]


def _days(start: date, end: date):
    d = start
    while d <= end:
        yield d
        d += timedelta(days=1)


@pytest.mark.parametrize("year", sorted(CLOSURES))
def test_fed_holidays_equals_reference_table(year):
    assert sorted(fed_holidays(year)) == [D(s) for s in CLOSURES[year]]


@pytest.mark.parametrize("year", sorted(CLOSURES))
def test_closed_weekdays_of_year_equal_reference_table(year):
    """Scanning every weekday of the year with is_banking_day gives exactly the table."""
    closed = [
        d for d in _days(date(year, 1, 1), date(year, 12, 31))
        if d.weekday() < 5 and not is_banking_day(d)
    ]
    assert closed == [D(s) for s in CLOSURES[year]]


@pytest.mark.parametrize("s", [s for ss in CLOSURES.values() for s in ss])
def test_every_listed_date_is_a_weekday_closure(s):
    d = D(s)
    assert d.weekday() < 5
    assert not is_banking_day(d)


@pytest.mark.parametrize("s", SATURDAY_HOLIDAY_FRIDAYS)
def test_friday_before_saturday_holiday_is_banking_day(s):
    d = D(s)
    assert d.weekday() == 4
    assert (d + timedelta(days=1)).weekday() == 5
    assert is_banking_day(d)


def test_sunday_independence_day_2027_closes_monday():
    assert D("2027-07-04").weekday() == 6
    assert not is_banking_day(D("2027-07-05"))
    assert fed_holidays(2027)[D("2027-07-05")] == "Independence Day (observed)"
    assert is_banking_day(D("2027-07-02"))  # the Friday before stays open


@pytest.mark.parametrize("s", HISTORIC_BANKING_DAYS)
def test_historic_banking_days(s):
    assert is_banking_day(D(s))


@pytest.mark.parametrize("s", HISTORIC_CLOSURES)
def test_historic_closures(s):
    assert not is_banking_day(D(s))


def test_juneteenth_only_from_2022():
    assert all("Juneteenth" not in n for y in range(MIN_YEAR, 2022) for n in fed_holidays(y).values())
    assert fed_holidays(2022)[D("2022-06-20")] == "Juneteenth National Independence Day (observed)"
    assert fed_holidays(2023)[D("2023-06-19")] == "Juneteenth National Independence Day"
    assert is_banking_day(D("2020-06-19"))  # Friday, not yet a holiday
    assert is_banking_day(D("2021-06-18"))  # 2021-06-19 was a Saturday


def test_fed_holidays_names_and_copy():
    h = fed_holidays(2026)
    assert h[D("2026-11-26")] == "Thanksgiving Day"
    assert h[D("2026-01-19")] == "Birthday of Martin Luther King, Jr."
    assert list(h) == sorted(h)
    h.clear()  # a copy: the calendar is unaffected
    assert len(fed_holidays(2026)) == 10
    assert not is_banking_day(D("2026-11-26"))


def test_weekends_are_not_banking_days():
    assert not is_banking_day(D("2026-11-28"))  # Saturday
    assert not is_banking_day(D("2026-11-29"))  # Sunday
    assert is_banking_day(D("2026-11-30"))


@pytest.mark.parametrize("year", range(MIN_YEAR, MAX_YEAR + 1))
def test_every_year_structure(year):
    h = fed_holidays(year)
    assert all(d.year == year and d.weekday() < 5 for d in h)
    expected_max = 11 if year >= 2022 else 10
    assert expected_max - 3 <= len(h) <= expected_max
    # The Monday holidays and Thanksgiving never fall on a weekend.
    names = set(h.values())
    for fixed in ("Birthday of Martin Luther King, Jr.", "Washington's Birthday", "Memorial Day",
                  "Labor Day", "Columbus Day", "Thanksgiving Day"):
        assert fixed in names


# ---------------------------------------------------------------------------------------------
# Independent cross-checks against third-party calendars (test-only dependencies)
# ---------------------------------------------------------------------------------------------

def test_cross_check_holidays_xfed_2022_2035():
    holidays = pytest.importorskip("holidays")
    xfed = holidays.financial_holidays("XFED", years=range(2022, 2036))
    mismatches = [
        d for d in _days(date(2022, 1, 1), date(2035, 12, 31))
        if d.weekday() < 5 and is_banking_day(d) != (d not in xfed)
    ]
    assert mismatches == []


def test_cross_check_holidays_xfed_full_range():
    """holidays' XFED calendar starts in 1999; from there to 2100 every weekday agrees."""
    holidays = pytest.importorskip("holidays")
    xfed = holidays.financial_holidays("XFED", years=range(1999, MAX_YEAR + 1))
    mismatches = [
        d for d in _days(date(1999, 1, 1), date(MAX_YEAR, 12, 31))
        if d.weekday() < 5 and is_banking_day(d) != (d not in xfed)
    ]
    assert mismatches == []


def test_pandas_us_federal_calendar_disagrees_and_is_not_used():
    """pandas' USFederalHolidayCalendar moves Saturday holidays to Friday (``nearest_workday``),
    closing Fridays on which the Fed is open -- it must not be used for banking days."""
    pytest.importorskip("pandas")
    from pandas.tseries.holiday import USFederalHolidayCalendar

    pd_hol = {ts.date() for ts in USFederalHolidayCalendar().holidays("2026-01-01", "2028-12-31")}
    assert D("2026-07-03") in pd_hol  # pandas: closed ("Independence Day" observed)
    assert is_banking_day(D("2026-07-03"))  # Fed: open
    for s in SATURDAY_HOLIDAY_FRIDAYS:
        assert D(s) in pd_hol and is_banking_day(D(s))


def test_holidays_us_country_calendar_disagrees():
    holidays = pytest.importorskip("holidays")
    us = holidays.US(years=[2026, 2027])
    assert D("2026-07-03") in us and is_banking_day(D("2026-07-03"))


def test_module_has_no_third_party_imports():
    code = (
        "import sys; import nacha.calendar as c; c.is_banking_day(c.date(2026, 7, 3)); "
        "bad = sorted(m for m in ('holidays', 'pandas', 'numpy', 'dateutil') if m in sys.modules); "
        "print(','.join(bad))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


# ---------------------------------------------------------------------------------------------
# Navigation
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "file_date, effective",
    [
        ("2026-11-27", "2026-11-30"),  # Fri after Thanksgiving -> Mon
        ("2026-11-25", "2026-11-27"),  # Wed -> Fri, Thanksgiving Thu Nov 26
        ("2026-12-24", "2026-12-28"),  # Thu -> Mon, Christmas Fri + weekend
        ("2026-07-02", "2026-07-03"),  # Thu -> Fri Jul 3 (Jul 4 is Saturday: Fed open)
        ("2027-07-02", "2027-07-06"),  # Fri -> Tue, Mon Jul 5 observed
        ("2027-12-30", "2027-12-31"),  # Thu -> Fri Dec 31 (Jan 1 2028 is Saturday)
        ("2027-12-31", "2028-01-03"),  # across the year end
        ("2026-11-28", "2026-11-30"),  # Saturday file date
        ("2026-01-19", "2026-01-20"),  # file date on a holiday (MLK)
    ],
)
def test_effective_entry_date(file_date, effective):
    assert effective_entry_date(D(file_date)) == D(effective)
    assert next_banking_day(D(file_date)) == D(effective)


@pytest.mark.parametrize(
    "d, prev",
    [
        ("2026-11-30", "2026-11-27"),  # Mon -> Fri
        ("2026-11-27", "2026-11-25"),  # skips Thanksgiving
        ("2026-12-28", "2026-12-24"),  # skips Christmas + weekend
        ("2027-07-06", "2027-07-02"),  # skips Mon Jul 5 observed + weekend
        ("2028-01-03", "2027-12-31"),  # Fri Dec 31 2027 is open
        ("2026-01-02", "2025-12-31"),  # skips New Year
        ("2026-11-29", "2026-11-27"),  # from a Sunday
    ],
)
def test_previous_banking_day(d, prev):
    assert previous_banking_day(D(d)) == D(prev)


def test_on_or_before_and_on_or_after():
    assert banking_day_on_or_after(D("2026-11-26")) == D("2026-11-27")
    assert banking_day_on_or_before(D("2026-11-26")) == D("2026-11-25")
    assert banking_day_on_or_after(D("2026-11-25")) == D("2026-11-25")
    assert banking_day_on_or_before(D("2026-11-25")) == D("2026-11-25")
    assert banking_day_on_or_after(D("2026-12-26")) == D("2026-12-28")
    assert banking_day_on_or_before(D("2026-12-27")) == D("2026-12-24")


@pytest.mark.parametrize(
    "d, n, expected",
    [
        ("2026-11-25", 1, "2026-11-27"),
        ("2026-11-25", 2, "2026-11-30"),
        ("2026-11-25", 3, "2026-12-01"),
        ("2026-11-30", -1, "2026-11-27"),
        ("2026-11-30", -2, "2026-11-25"),
        ("2026-12-23", 3, "2026-12-29"),  # Thu 24, (Fri 25 closed, weekend), Mon 28, Tue 29
        ("2026-12-29", -3, "2026-12-23"),
        ("2026-11-25", 0, "2026-11-25"),  # banking day: itself
        ("2026-11-26", 0, "2026-11-27"),  # holiday: rolls forward
        ("2026-11-28", 0, "2026-11-30"),  # Saturday: rolls forward
        ("2026-11-28", 1, "2026-11-30"),  # from a non-banking day
        ("2026-11-28", -1, "2026-11-27"),
        ("2026-01-02", 250, "2026-12-31"),  # 2026: 261 weekdays - 10 closures = 251
        ("2026-12-31", -250, "2026-01-02"),
    ],
)
def test_add_banking_days(d, n, expected):
    assert add_banking_days(D(d), n) == D(expected)


def test_banking_days_between():
    assert banking_days_between(D("2026-11-25"), D("2026-11-30")) == 2  # Fri 27, Mon 30
    assert banking_days_between(D("2026-11-25"), D("2026-11-25")) == 0
    assert banking_days_between(D("2026-11-26"), D("2026-11-27")) == 1
    assert banking_days_between(D("2026-11-30"), D("2026-11-25")) == -2
    assert banking_days_between(D("2025-12-31"), D("2026-12-31")) == 251
    assert banking_days_between(D("2026-12-31"), D("2027-12-31")) == 252  # 261 - 9
    assert banking_days_between(D("2027-12-31"), D("2028-12-31")) == 251  # 260 - 9


# ---------------------------------------------------------------------------------------------
# Range and type checks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("year", [MIN_YEAR - 1, MAX_YEAR + 1, 1900, 3000])
def test_years_outside_range_raise(year):
    with pytest.raises(ValueError, match="1990-2100"):
        fed_holidays(year)
    with pytest.raises(ValueError, match="1990-2100"):
        is_banking_day(date(year, 6, 1))


def test_stepping_out_of_range_raises():
    assert next_banking_day(D("2100-12-30")) == D("2100-12-31")
    with pytest.raises(ValueError):
        next_banking_day(D("2100-12-31"))
    with pytest.raises(ValueError):
        previous_banking_day(D("1990-01-02"))  # Jan 1 1990 closed; Dec 29 1989 out of range
    with pytest.raises(ValueError):
        add_banking_days(D("2100-01-04"), 400)
    with pytest.raises(ValueError):
        banking_days_between(D("1989-12-29"), D("1990-01-03"))


def test_type_errors():
    with pytest.raises(TypeError):
        is_banking_day(datetime(2026, 7, 3, 12, 0))
    with pytest.raises(TypeError):
        is_banking_day("2026-07-03")
    with pytest.raises(TypeError):
        add_banking_days(D("2026-07-03"), 1.0)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

dates = st.dates(min_value=date(MIN_YEAR, 1, 10), max_value=date(MAX_YEAR, 12, 20))


@given(dates)
@settings(max_examples=examples(500), deadline=None)
def test_next_banking_day_property(d):
    n = next_banking_day(d)
    assert n > d
    assert is_banking_day(n)
    assert not any(is_banking_day(x) for x in _days(d + timedelta(days=1), n - timedelta(days=1)))
    assert effective_entry_date(d) == n


@given(dates)
@settings(max_examples=examples(500), deadline=None)
def test_previous_banking_day_property(d):
    p = previous_banking_day(d)
    assert p < d
    assert is_banking_day(p)
    assert not any(is_banking_day(x) for x in _days(p + timedelta(days=1), d - timedelta(days=1)))
    assert next_banking_day(p) == banking_day_on_or_after(p + timedelta(days=1))
    assert banking_day_on_or_before(d) == (d if is_banking_day(d) else p)


@given(
    st.dates(min_value=date(MIN_YEAR + 2, 1, 1), max_value=date(MAX_YEAR - 2, 12, 31)),
    st.integers(min_value=-300, max_value=300),
)
@settings(max_examples=examples(300), deadline=None)
def test_add_banking_days_matches_stepping_and_between(d, n):
    result = add_banking_days(d, n)
    stepped = banking_day_on_or_after(d) if n == 0 else d
    for _ in range(abs(n)):
        stepped = next_banking_day(stepped) if n > 0 else previous_banking_day(stepped)
    assert result == stepped
    assert is_banking_day(result)
    if is_banking_day(d):
        assert banking_days_between(d, result) == n


@given(dates, st.integers(min_value=0, max_value=800))
@settings(max_examples=examples(300), deadline=None)
def test_banking_days_between_matches_scan(d, span):
    e = min(d + timedelta(days=span), date(MAX_YEAR, 12, 31))
    expected = sum(is_banking_day(x) for x in _days(d + timedelta(days=1), e))
    assert banking_days_between(d, e) == expected
    assert banking_days_between(e, d) == -expected


def test_memoized_day_arithmetic_still_checks_its_argument_types():
    """The banking-day functions are memoized: a value equal to a cached argument but of another
    type (a datetime for a date, True for 1) is still refused."""
    from datetime import datetime as _dt

    from nacha.calendar import add_banking_days, is_banking_day, next_banking_day

    d = date(2026, 12, 23)
    assert add_banking_days(d, 1) == next_banking_day(d) == date(2026, 12, 24)
    assert is_banking_day(d)
    with pytest.raises(TypeError):
        add_banking_days(d, True)
    with pytest.raises(TypeError):
        next_banking_day(_dt(2026, 12, 23))
    with pytest.raises(TypeError):
        is_banking_day(_dt(2026, 12, 23))
