"""`achbatch coverage assess [--date D]`: recompute every policy's coverage standing, store the
flags (history kept) and issue the members' notices for new or changed flags at risk.
`achbatch coverage export [--since RUN|DATE] [--out PATH]`: the CSV of coverage standing changes
for the enrollment system."""
from __future__ import annotations

import sys
from pathlib import Path

import click
import jinja2

from batch.run import wiring
from batch.rules.counts import counted
from batch.collect.coverage import assess_coverage
from batch.collect.coverage_export import SinceError, default_export_path, export_changes, resolve_since
from batch.store.fsutil import write_atomic
from batch.store.db import open_database
from batch.store.models import COVERAGE_STATUSES
from batch.collect.notices import issue_notices
from batch.collect.returns import cancel_unneeded_retries

from . import exitcodes
from .dates import business_date, date_option
from .settings import settings_from_context
from .helptext import SummaryGroup
from .stdio import write_stdout_bytes

_ORDER = COVERAGE_STATUSES  # ok, pending_activation, at_risk, not_started, past_due, termination_pending, terminated
_READABLE = 0o644  # read by the enrollment system (as the reports are; the umask may narrow it)


@click.group("coverage", cls=SummaryGroup)
def coverage_group() -> None:
    """Coverage standing, flags, and the export of their changes to the enrollment system."""


@coverage_group.command("assess")
@date_option
@click.pass_context
def assess_cmd(ctx: click.Context, run_date) -> None:
    """Recompute every policy's standing as of the date; one current flag per policy."""
    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    try:
        with open_database(settings.database_url) as sessions:
            cancelled = cancel_unneeded_retries(sessions, d)
            r = assess_coverage(sessions, d, wiring.coverage_rules(settings), tz=settings.origination.zone)
            notices = issue_notices(sessions, settings.notices_dir, d,
                                    templates_dir=settings.paths.notices_templates, sender=wiring.sender_name(settings))
    except jinja2.TemplateError as e:  # a notice template (most likely an override) is broken
        click.echo(f"achbatch: notice template error: {e}", err=True)
        sys.exit(exitcodes.USAGE)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    counts = ", ".join(f"{r.by_status.get(st, 0)} {st}" for st in _ORDER)
    click.echo(f"coverage {d}: {counted(r.policies, 'policy')} ({counts}); {r.new} new, {r.changed} changed, "
               f"{r.unchanged} unchanged")
    echo_follow_ups(cancelled, notices)
    sys.exit(exitcodes.OK)


@coverage_group.command("export")
@date_option
@click.option("--since", "since", metavar="RUN|DATE", default=None,
              help="Also export again the changes assessed on or after DATE (YYYY-MM-DD), or on or after the "
                   "business date of run RUN (its id); recorded as exported again, not as new.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output file, or - for standard output. Default: in paths.reports_dir, named after the "
                   "date, and after the export too when a file of that date exists (docs/formats.md).")
@click.pass_context
def export_cmd(ctx: click.Context, run_date, since: str | None, out: str | None) -> None:
    """Write the CSV of coverage standing changes (activated, at risk, not started, terminated,
    reinstated) not exported yet, for the enrollment system; each change is exported once (the
    export ledger), `--since` exports a date's changes again. The summary goes to standard error
    with `--out -`."""
    settings = settings_from_context(ctx)
    d = business_date(run_date, settings.origination.zone)
    to_stdout = out == "-"

    def deliver(export_id: int, data: bytes) -> str:
        if to_stdout:
            write_stdout_bytes(data)
            return "-"
        path = Path(out) if out else default_export_path(settings.reports_dir, d, export_id)
        if not out:
            path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, mode=_READABLE)
        return str(path)

    try:
        with open_database(settings.database_url) as sessions:
            since_date, since_run = resolve_since(sessions, since) if since is not None else (None, None)
            r = export_changes(sessions, d, deliver, since=since_date, since_run_id=since_run)
    except SinceError as e:
        click.echo(f"achbatch: {e}", err=True)
        sys.exit(exitcodes.USAGE)
    except OSError as e:
        click.echo(f"achbatch: cannot write {'standard output' if to_stdout else out or 'the export'}: "
                   f"{e.strerror or e}", err=True)
        sys.exit(exitcodes.USAGE)
    except exitcodes.DATABASE_ERRORS as e:
        exitcodes.fail_database(e)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(r.by_change.items()))
    again = f", {r.reexported} exported again (since {r.since})" if r.since is not None else ""
    click.echo(f"coverage export {r.export_id} ({d}): {counted(r.rows, 'change')}"
               + (f" ({kinds})" if kinds else "") + f"; {r.new} new{again} -> "
               + ("standard output" if to_stdout else r.path), err=to_stdout)
    sys.exit(exitcodes.OK)


def echo_follow_ups(cancelled: int, notices) -> None:
    """What a coverage assessment did besides the flags: re-presentments it cancelled, notices it
    wrote (`coverage assess` and `review resolve --action apply`)."""
    if cancelled:
        click.echo(f"  {counted(cancelled, 'pending re-presentment')} cancelled (premium paid another way)")
    if notices.created:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(notices.by_kind.items()))
        click.echo(f"notices: {notices.created} written ({kinds}); manifest {notices.manifest}")


def register(cli: click.Group) -> None:
    cli.add_command(coverage_group)
