"""`achbatch nightly [--date D] [--dry-run] [--returns-only] [--log-format text|json]`: the whole
night in order under one lock (batch/run/nightly.py). Logs on stderr, the one-line summary on stdout.

Exit codes: 0 done; 1 done, data problems reported (or a step failed unexpectedly); 2 usage or
configuration error; 3 skipped, another run holds the lock (nothing changed); 75 temporary
failure (bank or database unreachable, or stopped by SIGTERM): safe to run again, it resumes."""
from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import date

import click
from sqlalchemy.exc import OperationalError

from batch.store.db import DatabaseError, DatabaseUnavailable, open_database
from batch.run.datecheck import EarlierDate
from batch.run.nightly import RunResult, run_pipeline
from batch.store.runlock import LockHeld

from . import exitcodes
from .dates import business_date, date_option
from .logging_setup import EventLogger, Progress, log_format_option, setup_logging
from .settings import open_keyring, settings_from_context

__all__ = ["execute_run", "StopFlag"]


class StopFlag:
    """Set by SIGTERM: the run stops after the current step (a second SIGTERM is not special:
    systemd's stop timeout, then SIGKILL, remains the hard stop, and the ledger resumes)."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self) -> bool:
        return self.event.is_set()

    def set(self, *_args) -> None:
        self.event.set()


def execute_run(settings, keyring, d: date, *, kind: str = "nightly", dry_run: bool = False,
                logger: logging.Logger, should_stop: Callable[[], bool] = lambda: False,
                hook: Callable[[str, str], None] | None = None,
                echo: Callable[[str], None] = click.echo,
                allow_earlier_date: bool = False) -> tuple[int, RunResult | None]:
    """One run with the CLI's error handling; returns (exit code, result). Used by `nightly` and by
    the scheduler's jobs."""
    progress = Progress(logger)
    emit = EventLogger(logger, progress)
    try:
        with open_database(settings.database_url) as sessions:
            result = run_pipeline(settings, sessions, keyring, d, exit_codes=exitcodes.EXIT_CODES, kind=kind,
                                  dry_run=dry_run, emit=emit,
                                  progress=progress, hook=hook or (lambda step, point: None),
                                  should_stop=should_stop, allow_earlier_date=allow_earlier_date)
    except EarlierDate as e:
        progress.clear()
        logger.error("%s", e, extra={"event": "earlier_date", "business_date": d.isoformat(),
                                     "latest_business_date": e.latest.isoformat()})
        return exitcodes.USAGE, None
    except LockHeld as e:
        progress.clear()
        logger.warning("%s %s skipped: %s", kind, d, e, extra={"event": "lock_held", "kind": kind,
                                                                "business_date": d.isoformat(),
                                                                "holder": e.holder.as_dict()})
        echo(f"{kind} {d}: skipped: {e}; nothing changed")
        return exitcodes.LOCKED, None
    except DatabaseUnavailable as e:
        progress.clear()
        logger.error("%s", e, extra={"event": "database_unavailable"})
        return exitcodes.for_database_error(e), None
    except DatabaseError as e:  # no schema yet, wrong revision, bad URL
        progress.clear()
        logger.error("%s", e, extra={"event": "database_error"})
        return exitcodes.for_database_error(e), None
    except OperationalError as e:  # the database went away mid-run: the ledger resumes next time
        progress.clear()
        logger.error("the database failed during the run (%s); run again to resume",
                     str(getattr(e, "orig", e)).strip().splitlines()[0] if str(e) else type(e).__name__,
                     extra={"event": "database_unavailable"})
        return exitcodes.for_database_error(e), None
    progress.clear()
    echo(result.summary)
    return exitcodes.for_outcome(result.outcome), result


@click.command("nightly")
@date_option
@click.option("--dry-run", is_flag=True,
              help="Run the database steps in a transaction that is rolled back and only describe the "
                   "others: no lock, no ledger, no file, nothing sent. Changes nothing.")
@click.option("--returns-only", is_flag=True,
              help="Only fetch and apply the bank's return and NOC files (the morning poll), under the same lock.")
@click.option("--allow-earlier-date", is_flag=True,
              help="Run a business date earlier than the latest already run (refused otherwise, exit 2); "
                   "the run's summary in the ledger records it.")
@log_format_option
@click.pass_context
def nightly_cmd(ctx: click.Context, run_date, dry_run: bool, returns_only: bool, allow_earlier_date: bool,
                log_format: str) -> None:
    """The whole night, in order, under one lock: payments import (paths.drop_dir), AutoPay schedule,
    originate, send, returns fetch, returns process, coverage assess, reports and notices.

    Each step is recorded in the run ledger; a step done for the date is not done again, so a re-run
    after a failure resumes. Exit 0 done, 1 data problems, 2 configuration, 3 another run holds the
    lock (nothing changed), 75 temporary failure (run again)."""
    settings = settings_from_context(ctx)
    logger = setup_logging(log_format)
    d = business_date(run_date, settings.origination.zone)
    keyring = open_keyring(settings)
    stop = StopFlag()
    previous = signal.signal(signal.SIGTERM, stop.set)
    hook = (ctx.find_root().obj or {}).get("step_hook")  # tests: crash the process at a step boundary
    try:
        code, _result = execute_run(settings, keyring, d, kind="returns" if returns_only else "nightly",
                                    dry_run=dry_run, logger=logger, should_stop=stop, hook=hook,
                                    allow_earlier_date=allow_earlier_date)
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)


def register(cli: click.Group) -> None:
    cli.add_command(nightly_cmd)
