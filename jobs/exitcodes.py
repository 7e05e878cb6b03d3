"""Exit codes of the interface contract (DESIGN.md), and the one place that turns a database error
into one: every command calls `fail_database` (or `for_database_error`) instead of deciding itself."""
from __future__ import annotations

import sys
from typing import NoReturn

import click
from sqlalchemy.exc import OperationalError

from batch.db import DatabaseError, DatabaseUnavailable

OK = 0
DATA_PROBLEMS = 1  # done, but data problems were found and reported
USAGE = 2  # usage or configuration error
LOCKED = 3  # skipped: another run holds the lock
TEMPFAIL = 75  # temporary failure (bank unreachable), safe to retry

# What a command catches around its database work: our own errors (bad URL, no schema, wrong
# revision, unreachable) and SQLAlchemy's for a database that goes away mid-command.
DATABASE_ERRORS = (DatabaseError, OperationalError)


def for_database_error(e: BaseException) -> int:
    """75 when the database is unreachable or went away mid-command (safe to run again); 2 when
    it cannot work as configured (bad URL, no schema or an old one: `achbatch db upgrade`)."""
    return TEMPFAIL if isinstance(e, (DatabaseUnavailable, OperationalError)) else USAGE


def fail(code: int, message: str) -> NoReturn:
    """`achbatch: MESSAGE` on stderr, then exit with `code`."""
    click.echo(f"achbatch: {message}", err=True)
    sys.exit(code)


def fail_database(e: BaseException) -> NoReturn:
    """Say what the database error was and exit with its code (`for_database_error`)."""
    fail(for_database_error(e), str(e))
