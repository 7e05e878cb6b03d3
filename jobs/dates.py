"""The business date of a command: `--date D` (ISO) or today in the configured time zone."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import click


class IsoDate(click.ParamType):
    name = "DATE"

    def convert(self, value, param, ctx):
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO date (YYYY-MM-DD)", param, ctx)


ISO_DATE = IsoDate()


def date_option(f):
    return click.option("--date", "run_date", type=ISO_DATE, default=None,
                        help="Business date (YYYY-MM-DD); default: today in origination.timezone.")(f)


def business_date(given: date | None, tz: ZoneInfo) -> date:
    return given if given is not None else datetime.now(tz).date()
