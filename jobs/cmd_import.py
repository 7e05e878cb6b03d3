"""`achbatch import premiums|autopay|payments CSV`: load the enrollment system's bills, AutoPay
mandates, or the portal's one-time payments. Exit 0 all rows good, 1 some rows rejected (the first
50 listed with line, column and reason, all of them written to `<name>.rejects.csv` in
`<data_dir>/archive/imported/<date>/`; the rest loaded), 2 unreadable file, bad header or configuration error, 75 database unreachable."""
from __future__ import annotations

import sys
from datetime import datetime

import click
from sqlalchemy.exc import IntegrityError, OperationalError

from batch.store.db import DatabaseError, open_database
from batch.rules.counts import counted
from batch.collect.imports import ImportFileError, ImportResult, import_file, rejects_path_for, write_rejects

from . import exitcodes
from .settings import open_keyring, settings_from_context
from .helptext import SummaryGroup


SHOWN_REJECTS = 50  # rejected rows printed; all of them are in the rejects file


def _summary(r: ImportResult) -> str:
    notes = f", {counted(len(r.notes), 'note')}" if r.notes else ""
    dupes = f" ({counted(r.duplicates, 'duplicate')})" if r.duplicates else ""
    return (f"{r.file_name}: {counted(r.rows_total, r.kind + ' row')}: {r.loaded} loaded, "
            f"{r.updated} updated, {r.unchanged} unchanged, {len(r.rejected)} rejected{dupes}{notes}")


def _run(ctx: click.Context, kind: str, csv_path: str) -> None:
    settings = settings_from_context(ctx)
    keyring = open_keyring(settings) if kind != "premiums" else None
    show_progress = sys.stderr.isatty()

    def progress(rows: int) -> None:
        if show_progress:
            click.echo(f"\r  {rows:,} rows read", nl=False, err=True)

    try:
        with open_database(settings.database_url) as sessions:
            result = import_file(kind, sessions, csv_path, keyring=keyring,
                                 timezone=settings.origination.zone, progress=progress)
    except ImportFileError as e:
        click.echo(f"achbatch: {e}", err=True)
        sys.exit(exitcodes.USAGE)
    except DatabaseError as e:
        exitcodes.fail_database(e)
    except (OperationalError, IntegrityError) as e:
        # Lost connection, lock timeout, or a concurrent import of the same rows: the rows committed
        # so far stay (imports are idempotent), so running the same import again is safe.
        click.echo(f"achbatch: import interrupted by the database ({type(e.orig or e).__name__}); "
                   "it is safe to run it again", err=True)
        sys.exit(exitcodes.TEMPFAIL)
    finally:
        if show_progress:
            click.echo("", err=True)
    click.echo(_summary(result))
    if result.previous_run_id is not None:
        click.echo(f"  (the same file content was imported before, as import run {result.previous_run_id})")
    for rejection in result.rejected[:SHOWN_REJECTS]:  # reasons never carry more than the last four digits
        click.echo(f"  rejected {rejection}")
    if result.rejected:
        n = len(result.rejected)
        more = f" ({n - SHOWN_REJECTS} more not shown)" if n > SHOWN_REJECTS else ""
        # The input stays where it is (it may be a drop folder the nightly run imports from): the
        # rejects go to the data folder's import archive, where the nightly run puts its own.
        folder = settings.archive_dir / "imported" / datetime.now(settings.origination.zone).date().isoformat()
        try:
            where = write_rejects(result, rejects_path_for(csv_path, folder))
            click.echo(f"  {counted(n, 'row')} rejected{more}; all of them (account numbers masked) "
                       f"in {where}")
        except OSError as e:
            click.echo(f"  {counted(n, 'row')} rejected{more}; the rejects file could not be "
                       f"written to {folder}: {e.strerror}", err=True)
    for note in result.notes:  # rows loaded or unchanged, with something to say (NOC corrections kept); masked
        click.echo(f"  note {note}")
    sys.exit(exitcodes.DATA_PROBLEMS if result.rejected else exitcodes.OK)


@click.group("import", cls=SummaryGroup)
def import_group() -> None:
    """Load CSV exports (header row required; amounts in dollars; dates ISO)."""


@import_group.command("premiums")
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False))
@click.pass_context
def premiums_cmd(ctx: click.Context, csv_path: str) -> None:
    """Bills; columns member_id, member_name, plan_id, coverage_month, amount_due, subsidy, binder."""
    _run(ctx, "premiums", csv_path)


@import_group.command("autopay")
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False))
@click.pass_context
def autopay_cmd(ctx: click.Context, csv_path: str) -> None:
    """AutoPay mandates; columns member_id, plan_id, routing_number, account_number, account_type,
    account_holder, authorized_at, channel."""
    _run(ctx, "autopay", csv_path)


@import_group.command("payments")
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False))
@click.pass_context
def payments_cmd(ctx: click.Context, csv_path: str) -> None:
    """One-time payments; columns confirmation_id, submitted_at, channel, member_id, plan_id,
    coverage_month, amount, routing_number, account_number, account_type, account_holder."""
    _run(ctx, "payments", csv_path)


def register(cli: click.Group) -> None:
    cli.add_command(import_group)
