"""`achbatch report reconciliation|returns|coverage [--date D] [--format html|csv|xlsx] [--out PATH]`:
the reports finance and the enrollment team work from (default under paths.reports_dir)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from batch.run import wiring
from batch.rules.counts import counted
from batch.store.db import open_database
from batch.report.reports import (
    FORMATS,
    KINDS,
    coverage_report,
    default_output_path,
    extra_csv_path,
    extra_csvs_written,
    reconciliation_report,
    render,
    returns_report,
    sections,
    write_report,
)

from . import exitcodes
from .dates import business_date, date_option
from .settings import open_keyring, settings_from_context
from .stdio import write_stdout_bytes


@click.command("report")
@click.argument("kind", type=click.Choice(KINDS))
@date_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output file, or - for standard output (the main table only). Default: "
                   "<kind>-<date>.<format> in paths.reports_dir. A CSV report's further tables (review items, "
                   "rates, ...) go beside it as <stem>.<name>.csv.")
@click.pass_context
def report_cmd(ctx: click.Context, kind: str, run_date, fmt: str, out: str | None) -> None:
    """Write a report. Exit 1 when it carries a warning (a return-rate threshold crossed, a batch
    that does not tie to its control record). Every CSV has one header row: in the csv format the
    report's further tables (open review items, return rates, ...) are written beside the main CSV,
    one CSV each, named `<stem>.<name>.csv` (returns-2026-01-24.review.csv). With `--out -` the
    report goes to standard output (a CSV report: its main table only) and the summary line to
    standard error; an existing device, FIFO or link is written through, never replaced (to a device
    or FIFO, a CSV report is its main table only too)."""
    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    try:
        with open_database(settings.database_url) as sessions:
            if kind == "reconciliation":
                # after the database is found: a folder without one gets no key file either
                report = reconciliation_report(sessions, open_keyring(settings), d)
            elif kind == "returns":
                report = returns_report(sessions, d)
            else:
                # computed for d as `coverage assess --date d` computes it (same rules, same zone)
                report = coverage_report(sessions, d, wiring.coverage_rules(settings), tz=settings.origination.zone)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    to_stdout = out == "-"
    path = Path(out) if out else default_output_path(settings.reports_dir, kind, d, fmt)
    extra = [sec.name for sec in sections(report)] if fmt == "csv" else []
    beside = bool(extra) and not to_stdout and extra_csvs_written(path)
    try:
        if to_stdout:
            write_stdout_bytes(render(report, fmt))
        else:
            write_report(report, fmt, path)
    except OSError as e:
        click.echo(f"achbatch: cannot write {'standard output' if to_stdout else path}: {e.strerror or e}", err=True)
        sys.exit(exitcodes.USAGE)
    rows = len(report.table)
    click.echo(f"{kind} report {d}: {counted(rows, 'row')} -> {'standard output' if to_stdout else path}",
               err=to_stdout)
    if beside:
        click.echo(f"  and beside it: {', '.join(extra_csv_path(path, n).name for n in extra)}")
    elif extra:
        click.echo(f"  further tables not written with --out {'-' if to_stdout else path} (CSVs of their own need "
                   f"a file path): {', '.join(extra)}", err=True)
    for w in report.warnings:
        click.echo(w, err=True)
    sys.exit(exitcodes.DATA_PROBLEMS if report.problems else exitcodes.OK)


def register(cli: click.Group) -> None:
    cli.add_command(report_cmd)
