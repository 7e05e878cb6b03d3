"""Exit codes of the interface contract (DESIGN.md), defined here once, and the one place that
turns an outcome of batch/ (`for_outcome`) or a database error (`fail_database`,
`for_database_error`) into one. The pipeline records the same numbers in its run ledger
(runs.exit_code, the achbatch_last_run_exit_code metric): it is given `EXIT_CODES`."""
from __future__ import annotations

import sys
from types import MappingProxyType
from typing import NoReturn

import click

from batch.run.outcome import Outcome, most_urgent

OK = 0
DATA_PROBLEMS = 1  # done, but data problems were found and reported
USAGE = 2  # usage or configuration error (click exits 2 on usage errors too)
LOCKED = 3  # skipped, another run holds the lock
TEMPFAIL = 75  # temporary failure (bank or database unreachable): safe to retry (EX_TEMPFAIL)

EXIT_CODES = MappingProxyType({
    Outcome.DONE: OK,
    Outcome.PROBLEMS: DATA_PROBLEMS,
    Outcome.CONFIG: USAGE,
    Outcome.LOCKED: LOCKED,
    Outcome.TEMPORARY: TEMPFAIL,
})

_OUTCOME_OF = {code: outcome for outcome, code in EXIT_CODES.items()}


def for_outcome(outcome: Outcome) -> int:
    """The exit code of an outcome reported by batch/."""
    return EXIT_CODES[Outcome(outcome)]


def exit_code_for(codes: list[int]) -> int:
    """The most urgent of several exit codes (2 > 75 > 1 > 0), as a run's is of its steps'."""
    return for_outcome(most_urgent(_OUTCOME_OF[c] for c in codes))


def __getattr__(name: str):
    """`DATABASE_ERRORS`, what a command catches around its database work: our own errors (bad URL,
    no schema, wrong revision, unreachable) and SQLAlchemy's for a database that goes away
    mid-command. Built on first use, so that a command that never touches a database (`--help`,
    `validate`, `inspect`) does not import SQLAlchemy (an `except` clause evaluates it only when an
    exception reaches it)."""
    if name == "DATABASE_ERRORS":
        from sqlalchemy.exc import OperationalError

        from batch.store.db import DatabaseError

        return (DatabaseError, OperationalError)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def for_database_error(e: BaseException) -> int:
    """75 when the database is unreachable or went away mid-command (safe to run again); 2 when
    it cannot work as configured (bad URL, a database that does not exist, login refused, no
    schema or an old one: `achbatch db upgrade`)."""
    from sqlalchemy.exc import OperationalError

    from batch.store.db import DatabaseUnavailable, configuration_problem

    if isinstance(e, OperationalError) and configuration_problem(e) is not None:
        return USAGE
    return TEMPFAIL if isinstance(e, (DatabaseUnavailable, OperationalError)) else USAGE


def database_message(e: BaseException) -> str:
    """One line saying what the database error was (never SQLAlchemy's statement, parameters and
    background link)."""
    from batch.store.db import DatabaseError, brief, configuration_problem

    if isinstance(e, DatabaseError):
        lines = str(e).strip().splitlines()
        return lines[0] if lines else type(e).__name__
    problem = configuration_problem(e)
    return f"database error: {problem + ': ' if problem else ''}{brief(e)}"


def fail(code: int, message: str) -> NoReturn:
    """`achbatch: MESSAGE` on stderr, then exit with `code`."""
    click.echo(f"achbatch: {message}", err=True)
    sys.exit(code)


def fail_database(e: BaseException) -> NoReturn:
    """Say what the database error was and exit with its code (`for_database_error`)."""
    fail(for_database_error(e), database_message(e))
