"""`achbatch status [--json] [--runs N]`: the last runs and their steps, files awaiting delivery,
bank files awaiting processing, payments by state, coverage flags by status, return rates.
Exit 0 nothing needs attention (warnings may be shown); 1 something needs attention (batch/report/status.py
lists the reasons), so it can serve as a health check; 2 no schema / configuration; 75 database unreachable."""
from __future__ import annotations

import json
import sys

import click

from batch.rules.money import dollars
from batch.rules.counts import counted

from . import exitcodes
from .settings import settings_from_context


def _show(data: dict) -> None:
    echo = click.echo
    lock = data["lock"]
    if lock["held"]:
        h = lock["holder"] or {}
        echo(f"run lock: HELD since {h.get('since') or '?'} by {h.get('host') or '?'} pid {h.get('pid') or '?'}"
             + (f" (run {h['run_id']})" if h.get("run_id") else ""))
    else:
        echo("run lock: free" if lock["held"] is False else "run lock: unknown (held on another host?)")
    echo(f"last successful nightly run finished: {data.get('last_success_at') or 'never'}")
    echo("")
    echo("last runs:")
    if not data["last_runs"]:
        echo("  none yet")
    for r in data["last_runs"]:
        echo(f"  run {r['id']} {r['kind']} {r['business_date']}: {r['status']}"
             + (f" (exit {r['exit_code']})" if r["exit_code"] is not None else "")
             + f", started {r['started_at']} on {r['host']} pid {r['pid']}"
             + (f", {r['duration_s']:.1f}s" if r["duration_s"] is not None else ""))
        for st in r["steps"]:
            extra = st["note"] or ""
            if st["error"]:
                extra = (extra + "; " if extra else "") + f"error: {st['error']}"
            echo(f"    {st['step']:<16} {st['status']:<11} {extra}"[:200].rstrip())
    echo("")
    unsent = data["files_awaiting_delivery"]
    if unsent is None:
        echo("files awaiting delivery: unknown (no origination tables)")
    else:
        echo(f"files built, not confirmed sent: {len(unsent)}")
        for f in unsent:
            late = "  PAST CUT-OFF" if f["past_cutoff"] else ""
            echo(f"  {f['file_name']} ({f['state']}, {counted(f['entries'], 'entry')}, "
                 f"{dollars(f['total_debit_cents'])}, "
                 f"cut-off {f['cutoff_at']}){late}")
    inbound = data["files_awaiting_processing"]
    if inbound is None:
        echo("bank files awaiting processing: unknown (no inbound ledger)")
    else:
        echo(f"bank files received, not processed: {len(inbound)}")
        for f in inbound:
            echo(f"  {f['local_name']} (from {f['remote_name']}, received {f['received_at']})")
    pays = data["payments_by_state"]
    echo("payments by state: " + (", ".join(f"{k} {v}" for k, v in sorted(pays.items())) or "none"))
    cov = data["coverage_by_status"]
    echo("coverage flags by status: " + (", ".join(f"{k} {v}" for k, v in sorted(cov.items())) or "none"))
    if data.get("review_items_open") is not None:
        echo(f"review list: {counted(data['review_items_open'], 'open item')}")
    rates = data.get("return_rates")
    if rates:
        echo(f"return rates (60 days to {data['return_rates_as_of']}): " + ", ".join(
            f"{r['category']} {r['rate'] * 100:.2f}% of {r['entries']} (limit {r['threshold'] * 100:g}%)"
            + (" OVER" if r["crossed"] else "") for r in rates))
    echo(f"(times in {data.get('timezone')})")
    echo("")
    if data.get("warnings"):
        echo("warnings:")
        for w in data["warnings"]:
            echo(f"  - {w['message']} [{w['reason']}]")
    if data["attention"]:
        echo("NEEDS ATTENTION:")
        for a in data["attention"]:
            echo(f"  - {a['message']} [{a['reason']}]")
    else:
        echo("all well" if not data.get("warnings") else "nothing needs attention")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (keys: last_runs, lock, "
              "files_awaiting_delivery, files_awaiting_processing, payments_by_state, coverage_by_status, "
              "return_rates, review_items_open, attention, warnings, needs_attention, ok).")
@click.option("--runs", "runs", type=click.IntRange(1, 100), default=5, show_default=True,
              help="How many recent runs to show.")
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool, runs: int) -> None:
    """Last runs and their steps, files awaiting delivery, pending bank files, payments by state,
    coverage flags, what needs attention and warnings. Exit 1 when something needs attention
    (health check); warnings alone leave it 0."""
    # Imported here, not at the top: `achbatch status --help` stays fast (jobs/cli.py).
    from sqlalchemy.exc import OperationalError

    from batch.report.status import collect_status, table_names
    from batch.store.db import (
        DatabaseError, DatabaseUnavailable, brief, configuration_problem, make_engine, make_sessionmaker,
    )

    settings = settings_from_context(ctx)
    try:
        # Reads only, and never behind a running night's write lock (SQLite: deferred transactions).
        engine = make_engine(settings.database_url, sqlite_immediate=False, create=False)
    except DatabaseError as e:  # a bad URL, no database file
        exitcodes.fail_database(e)
    try:
        try:
            tables = table_names(engine)
        except OperationalError as e:
            if configuration_problem(e) is None:
                raise DatabaseUnavailable(f"cannot open the database: {brief(e)}") from None
            exitcodes.fail_database(e)
        if "runs" not in tables:
            click.echo("achbatch: the database has no achbatch schema (or an old one): run `achbatch db upgrade`",
                       err=True)
            sys.exit(exitcodes.USAGE)
        report = collect_status(make_sessionmaker(engine), settings, runs=runs)
    except DatabaseUnavailable as e:
        exitcodes.fail_database(e)
    except OperationalError as e:
        exitcodes.fail_database(e)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report.data, indent=2, default=str))
    else:
        _show(report.data)
    sys.exit(exitcodes.OK if report.ok else exitcodes.DATA_PROBLEMS)


def register(cli: click.Group) -> None:
    cli.add_command(status_cmd)
