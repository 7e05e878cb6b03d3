"""The business date of a command: `--date D` (ISO) or today in the configured time zone."""
from __future__ import annotations

import calendar
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import click

_YMD = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def date_problem(value: str) -> str:
    """Why `value` is not a date: a day or month that does not exist is named as such."""
    m = _YMD.match(value.strip())
    if not m:
        return f"{value!r} is not a date (YYYY-MM-DD)"
    y, mo, d = map(int, m.groups())
    if not 1 <= mo <= 12:
        return f"{value!r} does not exist: there is no month {mo}"
    days = calendar.monthrange(y, mo)[1] if y >= 1 else 31
    if not 1 <= d <= days:
        return f"{value!r} does not exist: {calendar.month_name[mo]} {y} has no day {d} (it has {days})"
    return f"{value!r} is not a date (YYYY-MM-DD)"


class IsoDate(click.ParamType):
    name = "DATE"

    def convert(self, value, param, ctx):
        if isinstance(value, date):
            return value
        if _YMD.match(value.strip()):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.fail(date_problem(value), param, ctx)


ISO_DATE = IsoDate()


def date_option(f):
    return click.option("--date", "run_date", type=ISO_DATE, default=None,
                        help="Business date (YYYY-MM-DD); default: today in origination.timezone.")(f)


def business_date(given: date | None, tz: ZoneInfo) -> date:
    return given if given is not None else datetime.now(tz).date()
