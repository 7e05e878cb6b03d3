"""`achbatch report reconciliation|returns|coverage [--date D] [--format html|csv|xlsx] [--out PATH]`:
the reports finance and the enrollment team work from (default under paths.reports_dir)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from batch.store.db import open_database
from batch.report.reports import (
    FORMATS,
    KINDS,
    coverage_report,
    default_output_path,
    reconciliation_report,
    returns_report,
    write_report,
)

from . import exitcodes
from .dates import business_date, date_option
from .settings import open_keyring, settings_from_context


@click.command("report")
@click.argument("kind", type=click.Choice(KINDS))
@date_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output file, or - for standard output. Default: <kind>-<date>.<format> in paths.reports_dir.")
@click.pass_context
def report_cmd(ctx: click.Context, kind: str, run_date, fmt: str, out: str | None) -> None:
    """Write a report. Exit 1 when it carries a warning (a return-rate threshold crossed, a batch
    that does not tie to its control record)."""
    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    keyring = open_keyring(settings) if kind == "reconciliation" else None
    try:
        with open_database(settings.database_url) as sessions:
            if kind == "reconciliation":
                report = reconciliation_report(sessions, keyring, d)
            elif kind == "returns":
                report = returns_report(sessions, d)
            else:
                report = coverage_report(sessions, d)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    path = Path(out) if out else default_output_path(settings.reports_dir, kind, d, fmt)
    try:
        write_report(report, fmt, path)
    except OSError as e:
        click.echo(f"achbatch: cannot write {path}: {e.strerror or e}", err=True)
        sys.exit(exitcodes.USAGE)
    click.echo(f"{kind} report {d}: {len(report.table)} rows -> {path}")
    for w in report.warnings:
        click.echo(w, err=True)
    sys.exit(exitcodes.DATA_PROBLEMS if report.problems else exitcodes.OK)


def register(cli: click.Group) -> None:
    cli.add_command(report_cmd)
